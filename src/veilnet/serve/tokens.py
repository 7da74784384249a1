"""Bearer tokens: the server's set (a file or ``$VEILNET_TOKENS``) and the client's one
(a file or ``$VEILNET_TOKEN``). A token file holds one token per line; blank lines and ``#``
comments are skipped. Tokens are never printed or logged."""

from __future__ import annotations

import os

from veilnet.errors import ConfigError

#: Shortest token the server accepts (a guessable token is no authentication).
MIN_LENGTH = 16
HOW_TO_MAKE = "python -c 'import secrets; print(secrets.token_urlsafe(32))' > tokens.txt"


def read_token_file(path: str | os.PathLike[str]) -> list[str]:
    """The tokens in ``path`` (ConfigError when it cannot be read)."""
    try:
        text = open(path, encoding="utf-8").read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"token file {path} cannot be read ({type(exc).__name__})") from None
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def server_tokens(token_file: str | os.PathLike[str] | None = None, env: str = "VEILNET_TOKENS") -> list[str]:
    """The server's tokens from ``token_file``, or else from ``$env`` (separated by commas or
    whitespace). ConfigError when there are none or one is shorter than :data:`MIN_LENGTH`."""
    if token_file is not None:
        tokens, source = read_token_file(token_file), f"token file {token_file}"
    else:
        tokens, source = os.environ.get(env, "").replace(",", " ").split(), f"${env}"
    if not tokens:
        raise ConfigError(f"no tokens in {source}; give --token-file or set ${env} (or pass --no-auth to serve without authentication)")
    if any(len(t) < MIN_LENGTH for t in tokens):
        raise ConfigError(f"{source} has a token shorter than {MIN_LENGTH} characters; make one with: {HOW_TO_MAKE}")
    return tokens


def client_token(token_file: str | os.PathLike[str] | None = None, env: str = "VEILNET_TOKEN") -> str | None:
    """The client's token: the first one in ``token_file``, or else ``$env`` (None if unset)."""
    if token_file is None:
        return os.environ.get(env) or None
    tokens = read_token_file(token_file)
    if not tokens:
        raise ConfigError(f"token file {token_file} holds no token")
    return tokens[0]


__all__ = ["client_token", "server_tokens"]
