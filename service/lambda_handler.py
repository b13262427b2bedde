"""The Lambda handler's public path, ``service.lambda_handler.handler``: deployed stacks name it.

The handler lives in service/surfaces/lambda_handler.py; this alias keeps stacks deployed before
the move working (docs/decisions.md, "The tree shows the architecture").
"""

from service.surfaces.lambda_handler import handler

__all__ = ["handler"]
