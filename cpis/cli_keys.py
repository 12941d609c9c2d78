"""``cpis token``, ``cpis keys rotate`` and ``cpis audit verify``: the commands about
keys, tokens signed with them and the audit chain sealed with them. Wired by
:mod:`cpis.cli`."""

from __future__ import annotations

import argparse
import sys

from cpis.adapters.audit_log import ANCHOR_FILE, Anchor, AuditKeys, public_keys_of
from cpis.adapters.keys import parse_audit_public_keys
from cpis.app import Runtime
from cpis.errors import SettingsError, StartupError
from cpis.settings import Settings


def _assertion(pem: bytes, client_id: str, url: str, kid: str) -> str:
    """A client assertion signed with the key in ``pem``, its algorithm chosen by key type."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    from cpis.adapters.tokens import make_client_assertion

    key = serialization.load_pem_private_key(pem, password=None)
    if isinstance(key, rsa.RSAPrivateKey):
        alg = "RS512"
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        alg = "ES384" if key.curve.name == "secp384r1" else "ES256"
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        alg = "EdDSA"
    else:
        raise ValueError("unsupported key type")
    return make_client_assertion(pem, client_id=client_id, token_url=url, kid=kid, alg=alg)  # type: ignore[arg-type]


async def token(settings: Settings, args: argparse.Namespace) -> int:
    import aiohttp

    url = args.url or settings.token_url
    try:
        assertion = _assertion(args.key.read_bytes(), args.client, url, args.kid or args.client)
    except (OSError, ValueError, TypeError) as exc:
        print(f"error: cannot use the key in {args.key}: {exc}", file=sys.stderr)
        return 2
    from cpis.web.oauth import ASSERTION_TYPE, ID_TOKEN_TYPE, TOKEN_EXCHANGE

    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion,
    }
    if args.id_token:
        form.update(
            grant_type=TOKEN_EXCHANGE, subject_token=args.id_token, subject_token_type=ID_TOKEN_TYPE
        )
    try:
        async with aiohttp.ClientSession() as session, session.post(url, data=form) as resp:
            body = await resp.json(content_type=None)
    except aiohttp.ClientError as exc:
        print(f"error: cannot reach {url}: {exc} (is `cpis serve` running?)", file=sys.stderr)
        return 1
    if resp.status != 200 or "access_token" not in body:
        print(
            f"error: token refused ({resp.status}): {body.get('error_description', body)}",
            file=sys.stderr,
        )
        return 1
    print(body["access_token"])
    return 0


def _audit_verify_inputs(
    settings: Settings, args: argparse.Namespace
) -> tuple[Anchor | None, str | None, AuditKeys | None]:
    """The anchor to check against (and where it came from) and any public keys given.

    Raises ValueError or OSError with a message fit for the operator.
    """
    anchor, source = None, None
    if args.anchor:
        anchor, source = Anchor.parse(args.anchor), "--anchor"
    elif args.anchor_file:
        anchor, source = Anchor.from_file(args.anchor_file), str(args.anchor_file)
    elif (settings.data_dir / ANCHOR_FILE).exists():
        # Read before verify seals anything, which rewrites the file.
        path = settings.data_dir / ANCHOR_FILE
        anchor, source = Anchor.from_file(path), str(path)
    keys = None
    if args.public_key:
        found = parse_audit_public_keys(args.public_key.read_bytes(), source=str(args.public_key))
        if not found:
            raise ValueError(f"{args.public_key} holds no PEM public key")
        keys = public_keys_of(found)
    return anchor, source, keys


async def audit_verify(rt: Runtime, args: argparse.Namespace) -> int:
    """``cpis audit verify``: what was checked, then intact (0) or where it broke (1)."""
    try:
        anchor, source, keys = _audit_verify_inputs(rt.settings, args)
    except (ValueError, OSError, SettingsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if anchor is not None:
        print(f"checking against the anchor from {source}: {anchor}")
    report = await rt.audit.verify(anchor=anchor, public_keys=keys)
    for line in report.lines():
        print(line)
    if report.intact:
        print("audit log intact")
        return 0
    where = "" if report.broken_seq is None else f" (at seq {report.broken_seq})"
    print(f"audit log broken{where}: {report.problem}", file=sys.stderr)
    return 1


def rotate_keys(settings: Settings, kind: str) -> int:
    """Rotate keys kept in the data directory; keys given by CPIS_KEYS_* are the operator's."""
    from cpis.adapters.keys import (
        AUDIT_KEY_FILE,
        DATA_KEYS_FILE,
        SIGNING_KEY_FILE,
        rotate_audit_key,
        rotate_data_key,
        rotate_signing_key,
    )

    given, name, variable = {
        "data": (settings.keys_data, DATA_KEYS_FILE, "CPIS_KEYS_DATA"),
        "signing": (settings.keys_signing, SIGNING_KEY_FILE, "CPIS_KEYS_SIGNING"),
        "audit": (settings.keys_audit, AUDIT_KEY_FILE, "CPIS_KEYS_AUDIT"),
    }[kind]
    if given is not None:
        print(f"error: the {kind} keys come from {variable}; rotate them there", file=sys.stderr)
        return 2
    path = settings.keys_dir.absolute() / name
    if not path.exists():
        # Rotating in the wrong directory would make a key no database was sealed with.
        raise StartupError(
            f"no {kind} keys to rotate: {path} does not exist (set CPIS_DATA_DIR to the data"
            " directory `cpis serve` uses)"
        )
    if kind == "data":
        kid = rotate_data_key(settings.keys_dir)
        print(f"new active data key {kid}; restart every replica to start sealing with it")
    elif kind == "signing":
        rotate_signing_key(settings.keys_dir)
        print("new signing key; the old public key stays published until the next rotation")
    else:
        kid = rotate_audit_key(settings.keys_dir)
        print(
            f"new audit key {kid}; restart every replica to sign seals with it (old public keys"
            " are kept: seals never expire)"
        )
    return 0
