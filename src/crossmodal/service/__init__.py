"""The HTTP service: ``crossmodal serve`` (see :mod:`crossmodal.service.app`)."""

from crossmodal.service.settings import ServiceSettings

__all__ = ["ServiceSettings"]
