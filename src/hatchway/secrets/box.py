"""Envelope encryption of secret parameters with the AWS Encryption SDK.

Every ciphertext is an Encryption SDK message (a fresh data key per cache entry, wrapped by the
master key, AES-256-GCM with key commitment and no signature, so it stays small and fast) behind
the prefix ``hwenc:v1:``. Its encryption context binds it to a project, an environment and
optionally an action; the context is authenticated data of the message, so the binding holds
cryptographically, and :meth:`SecretBox.decrypt` also checks it against where the value is used.

The master key is a local AES-256 key file on the embedded default and a KMS key on AWS: the
same message format for both. Data keys are cached per (master key, context) for at most five
minutes and a bounded number of entries by the SDK's caching materials manager, so a burst of
runs costs one KMS call per data key, not one per secret. On the embedded default the same key
also encrypts the blobs kept at rest (:class:`BlobCipher`: project files, artifacts, stashes).
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hatchway.domain.parameters import ANY_ACTION, CIPHERTEXT_PREFIX, context_for, is_ciphertext
from hatchway.errors import InternalError, SecretBindingError, Unavailable

CACHE_SECONDS = 300.0
CACHE_CAPACITY = 1000


class SecretBox(ABC):
    """Encrypts and decrypts secret values bound to (project, environment, action)."""

    @abstractmethod
    def encrypt(self, plaintext: str, project_id: str, environment: str, action: str | None = None) -> str: ...

    @abstractmethod
    def decrypt(self, ciphertext: str, project_id: str, environment: str, action: str) -> str:
        """The plaintext, if the ciphertext was made for this project, environment and action."""

    def check(self) -> None:
        """Raise :class:`Unavailable` if the master key cannot be used."""


class EsdkSecretBox(SecretBox):
    """SecretBox over the AWS Encryption SDK with a caching materials manager."""

    def __init__(self, master_key_provider: Any) -> None:
        import aws_encryption_sdk
        from aws_encryption_sdk.caches.local import LocalCryptoMaterialsCache
        from aws_encryption_sdk.identifiers import Algorithm, CommitmentPolicy
        from aws_encryption_sdk.materials_managers.caching import CachingCryptoMaterialsManager

        self._client = aws_encryption_sdk.EncryptionSDKClient(
            commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT
        )
        self._algorithm = Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY
        self._cmm = CachingCryptoMaterialsManager(
            master_key_provider=master_key_provider,
            cache=LocalCryptoMaterialsCache(CACHE_CAPACITY),
            max_age=CACHE_SECONDS,
            max_messages_encrypted=2**32,
        )
        self._lock = threading.Lock()

    def _sdk_errors(self) -> tuple[type[BaseException], ...]:
        from aws_encryption_sdk.exceptions import AWSEncryptionSDKClientError

        return (AWSEncryptionSDKClientError,)

    def encrypt(self, plaintext: str, project_id: str, environment: str, action: str | None = None) -> str:
        context = context_for(project_id, environment, action)
        try:
            with self._lock:
                message, _ = self._client.encrypt(
                    source=plaintext.encode(),
                    materials_manager=self._cmm,
                    encryption_context=context,
                    algorithm=self._algorithm,
                )
        except self._sdk_errors() as exc:
            raise Unavailable("the key service is unavailable; nothing was encrypted") from exc
        return CIPHERTEXT_PREFIX + base64.urlsafe_b64encode(message).decode().rstrip("=")

    def decrypt(self, ciphertext: str, project_id: str, environment: str, action: str) -> str:
        from aws_encryption_sdk.exceptions import (
            DecryptKeyError,
            MasterKeyProviderError,
            SerializationError,
        )
        from cryptography.exceptions import InvalidTag

        if not is_ciphertext(ciphertext):
            raise SecretBindingError("not a hatchway ciphertext")
        body = ciphertext[len(CIPHERTEXT_PREFIX) :]
        try:
            message = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (ValueError, binascii.Error):
            raise SecretBindingError("the ciphertext is damaged") from None
        try:
            with self._lock:
                plaintext, header = self._client.decrypt(source=message, materials_manager=self._cmm)
        except InvalidTag:  # a changed byte: the message no longer authenticates
            raise SecretBindingError("the ciphertext is damaged") from None
        except (SerializationError, DecryptKeyError, MasterKeyProviderError) as exc:
            if _is_transport_failure(exc):
                raise Unavailable("the key service is unavailable; nothing was decrypted") from exc
            raise SecretBindingError("the ciphertext does not belong here") from None
        except self._sdk_errors() as exc:
            if _is_transport_failure(exc):
                raise Unavailable("the key service is unavailable; nothing was decrypted") from exc
            raise SecretBindingError("the ciphertext does not belong here") from None
        bound = header.encryption_context
        if (
            bound.get("project_id") != project_id
            or bound.get("environment") != environment
            or bound.get("action") not in (ANY_ACTION, action)
        ):
            raise SecretBindingError("the ciphertext belongs to another project, environment or action")
        text: str = plaintext.decode()
        return text


def _is_transport_failure(exc: BaseException) -> bool:
    """KMS unreachable (as opposed to a ciphertext that is simply not ours)."""
    seen: BaseException | None = exc
    while seen is not None:
        name = type(seen).__name__
        if name in ("EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError"):
            return True
        if name == "ClientError":
            code = getattr(seen, "response", {}).get("Error", {}).get("Code", "")
            if code in ("KMSInternalException", "DependencyTimeoutException", "ThrottlingException",
                        "KMSInvalidStateException", "DisabledException"):  # fmt: skip
                return True
        seen = seen.__cause__ or seen.__context__
    return False


# ---------------------------------------------------------------------------------------------
# the embedded default's master key: an AES-256 key file


def load_or_create_key(path: Path) -> bytes:
    """Read the 32-byte key file, creating it (0600) on first start."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = os.urandom(32)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return load_or_create_key(path)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key)
        return key
    except OSError as exc:
        raise Unavailable("the local key file cannot be read") from exc
    if len(data) != 32:
        raise Unavailable("the local key file is damaged (expected 32 bytes)")
    return data


def read_or_create_token_file(path: Path) -> str:
    """The generated global admin token kept at ``path`` (0600), made on first start."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = "hwadmin_" + secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    return token


def _local_key_provider(key_path: Path) -> Any:
    """The Encryption SDK's master key provider over the key file at ``key_path``."""
    from aws_encryption_sdk.identifiers import EncryptionKeyType, WrappingAlgorithm
    from aws_encryption_sdk.key_providers.raw import RawMasterKeyProvider, WrappingKey

    class LocalKeyProvider(RawMasterKeyProvider):  # type: ignore[misc]
        provider_id = "hatchway-local"

        def _get_raw_key(self, key_id: bytes) -> WrappingKey:
            return WrappingKey(
                wrapping_algorithm=WrappingAlgorithm.AES_256_GCM_IV12_TAG16_NO_PADDING,
                wrapping_key=load_or_create_key(key_path),
                wrapping_key_type=EncryptionKeyType.SYMMETRIC,
            )

    load_or_create_key(key_path)
    provider = LocalKeyProvider()
    provider.add_master_key(b"local")
    return provider


def local_secret_box(key_path: Path) -> EsdkSecretBox:
    """A SecretBox whose master key is the key file at ``key_path``."""
    return EsdkSecretBox(_local_key_provider(key_path))


# ---------------------------------------------------------------------------------------------
# blobs at rest: files, artifacts and stashes of the embedded default

#: an Encryption SDK frame of a blob: what is held in memory per blob being read or written
BLOB_FRAME = 64 * 1024


class BlobCipher:
    """Streams blobs through the Encryption SDK under the deployment's master key.

    Each blob is one message - the same format as a secret parameter's (AES-256-GCM with key
    commitment, a fresh data key wrapped by the master key), in frames of :data:`BLOB_FRAME`
    bytes, so a blob of any size is written and read in bounded memory. Its encryption context
    names the blob, so a message moved to another name does not decrypt there.
    """

    def __init__(self, master_key_provider: Any) -> None:
        import aws_encryption_sdk
        from aws_encryption_sdk.identifiers import Algorithm, CommitmentPolicy
        from aws_encryption_sdk.materials_managers.default import DefaultCryptoMaterialsManager

        self._client = aws_encryption_sdk.EncryptionSDKClient(
            commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT
        )
        self._algorithm = Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY
        # a data key per blob: the secrets' data key cache is left to the secrets
        self._cmm = DefaultCryptoMaterialsManager(master_key_provider)

    def encrypt(self, source: Any, name: str) -> Iterator[bytes]:
        """The message holding the bytes read from ``source`` (a binary file) as blob ``name``, in pieces."""
        stream = self._client.stream(
            mode="e",
            source=source,
            materials_manager=self._cmm,
            encryption_context={"hatchway": "blob", "blob": name},
            algorithm=self._algorithm,
            frame_length=BLOB_FRAME,
        )
        yield from _pieces(stream)

    def decrypt(self, source: Any, name: str) -> Iterator[bytes]:
        """The plaintext of the message read from ``source``, which must have been blob ``name``.

        A damaged or truncated message, or one made for another name, raises
        :class:`InternalError` (each frame is authenticated before its plaintext is handed out).
        """
        from aws_encryption_sdk.exceptions import AWSEncryptionSDKClientError
        from cryptography.exceptions import InvalidTag

        try:
            stream = self._client.stream(mode="d", source=source, materials_manager=self._cmm)
            if stream.header.encryption_context.get("blob") != name:
                raise InternalError(f"the stored file {name} was made for another name")
            yield from _pieces(stream)
        except (AWSEncryptionSDKClientError, InvalidTag) as exc:
            raise InternalError(f"the stored file {name} cannot be decrypted ({type(exc).__name__})") from exc


def _pieces(stream: Any) -> Iterator[bytes]:
    # read and closed by hand: the SDK's context manager logs a traceback when a stream is left
    # unfinished (a failed source, a reader that stopped early)
    while True:
        piece = stream.read(BLOB_FRAME)
        if not piece:
            break
        yield piece
    stream.close()


def local_blob_cipher(key_path: Path) -> BlobCipher:
    """A BlobCipher whose master key is the key file at ``key_path``."""
    return BlobCipher(_local_key_provider(key_path))


if TYPE_CHECKING:  # mypy checks that these answer their ports
    from hatchway import ports

    def _implements(box: SecretBox) -> ports.SecretBox:
        return box
