"""schemathesis hooks for tests/test_schemathesis.py (loaded through SCHEMATHESIS_HOOKS).

The fuzzer runs with one admin token. Revoking a token is an operation it must
fuzz, and it learns its own token's id from `getCurrentToken` and `listTokens`
(stateful links): revoking that one would leave the rest of the run answering
401 and proving nothing. A `revokeToken` call aimed at the fuzzer's own token is
pointed at an id that names nothing instead; tokens the run created itself stay
fair game.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import schemathesis

OWN_TOKEN_ID = os.environ.get("PRESSLUFT_FUZZ_OWN_TOKEN_ID", "").lower()


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: Any) -> None:
    if case.method.upper() != "DELETE" or case.path != "/api/tokens/{token_id}":
        return
    params = case.path_parameters or {}
    if OWN_TOKEN_ID and str(params.get("token_id", "")).strip().lower() == OWN_TOKEN_ID:
        case.path_parameters = {**params, "token_id": str(uuid.uuid4())}
