"""Adapters that turn labelled relevance sets into products, queries and graded judgments."""
