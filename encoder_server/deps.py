"""FastAPI dependencies as ``Annotated`` aliases.

They are ``async def`` on purpose: FastAPI runs a plain ``def`` dependency in the shared
thread pool, so even /readyz would wait for a free thread behind slow admin or status calls;
these only read ``app.state`` and so run on the event loop.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from encoder_server.holder import ModelHolder
from services.events import EventSink
from services.settings import Settings


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


async def get_holder(request: Request) -> ModelHolder:
    return request.app.state.holder  # type: ignore[no-any-return]


async def get_sink(request: Request) -> EventSink:
    return request.app.state.sink  # type: ignore[no-any-return]


SettingsDep = Annotated[Settings, Depends(get_settings)]
HolderDep = Annotated[ModelHolder, Depends(get_holder)]
SinkDep = Annotated[EventSink, Depends(get_sink)]
