-- Served lists record where their page starts (results[i] was shown at result_offset + i + 1),
-- so an interaction binds to the exact position the server served, on any page; and the
-- keyed hash of the shopper's address (client_key, set by encoder_server), so no client can
-- weigh more than a capped share by inventing session or client ids.

ALTER TABLE queries ADD COLUMN result_offset INTEGER DEFAULT 0;
ALTER TABLE queries ADD COLUMN client_key VARCHAR;
