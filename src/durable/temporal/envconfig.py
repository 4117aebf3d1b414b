"""`temporalio.envconfig` under its names: connection settings from a TOML profile file and
`TEMPORAL_*` environment variables, loaded as Temporal's SDK loads them, so that

    config = ClientConfig.load_client_connect_config()
    config.setdefault("target_host", "localhost:7233")
    client = await Client.connect(**config)

runs unchanged. What the settings mean on Durable is `Client.connect`'s business: an address
that is a Durable database URL (`sqlite:///...`, `postgresql://...`) names that store; a
Temporal frontend address (`localhost:7233`, no scheme) names none, so DURABLE_DB or the
embedded default is used. The namespace is kept on the client; API keys, TLS and gRPC metadata
have nothing to act on, since the client talks to the database directly.

Sources, as Temporal's: the file named by `config_file` / `config_source`, else
TEMPORAL_CONFIG_FILE, else `<user config dir>/temporalio/temporal.toml` (on Linux
$XDG_CONFIG_HOME or ~/.config); a missing file is no error. The profile is the one asked for,
else TEMPORAL_PROFILE, else `default`; naming one the file lacks is an error. Then
TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS (`0` / `false` turns TLS
off, anything else on), TEMPORAL_TLS_{CLIENT_CERT,CLIENT_KEY,SERVER_CA_CERT}_{PATH,DATA},
TEMPORAL_TLS_SERVER_NAME, TEMPORAL_TLS_DISABLE_HOST_VERIFICATION and TEMPORAL_GRPC_META_<NAME>
override the profile's values.
"""

from __future__ import annotations

import os
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias, TypedDict

from durable.errors import UsageError
from durable.temporal.service import TLSConfig

__all__ = ["ClientConfig", "ClientConfigProfile", "ClientConfigTLS", "ClientConnectConfig",
           "ConfigError", "DataSource"]

DataSource: TypeAlias = Path | str | bytes
"""A file's path, or (str or bytes) its contents."""

_PROFILE_KEYS = frozenset({"address", "namespace", "api_key", "tls", "codec", "grpc_meta"})
_TLS_SOURCES = {"server_ca_cert": "server_root_ca_cert", "client_cert": "client_cert",
                "client_key": "client_private_key"}
_TLS_KEYS = frozenset({"disabled", "server_name", "disable_host_verification",
                       *(f"{k}_{form}" for k in _TLS_SOURCES for form in ("path", "data"))})
_CODEC_KEYS = frozenset({"endpoint", "auth"})


class ConfigError(UsageError):
    """The connection settings could not be loaded: which file or variable, and why."""


class ClientConnectConfig(TypedDict, total=False):
    """The keyword arguments of `Client.connect` a profile can set."""

    target_host: str
    namespace: str
    api_key: str
    tls: bool | TLSConfig
    rpc_metadata: Mapping[str, str]


@dataclass(frozen=True)
class ClientConfigTLS:
    disabled: bool | None = None
    server_name: str | None = None
    server_root_ca_cert: DataSource | None = None
    client_cert: DataSource | None = None
    client_private_key: DataSource | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.disabled is not None:
            d["disabled"] = self.disabled
        if self.server_name is not None:
            d["server_name"] = self.server_name
        for key, attr in _TLS_SOURCES.items():
            source = getattr(self, attr)
            if isinstance(source, Path):
                d[key] = {"path": str(source)}
            elif isinstance(source, str | bytes):
                d[key] = {"data": source if isinstance(source, str) else source.decode()}
        return d

    def to_connect_tls_config(self) -> bool | TLSConfig:
        """False when TLS is off; else the TLS settings, certificate files read as Temporal
        reads them (a missing file fails here)."""
        if self.disabled is True:
            return False
        return TLSConfig(domain=self.server_name,
                         server_root_ca_cert=_read_source(self.server_root_ca_cert),
                         client_cert=_read_source(self.client_cert),
                         client_private_key=_read_source(self.client_private_key))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> ClientConfigTLS | None:
        if not d:
            return None
        return cls(disabled=d.get("disabled"), server_name=d.get("server_name"),
                   **{attr: _source_of(d.get(key)) for key, attr in _TLS_SOURCES.items()})


@dataclass(frozen=True)
class ClientConfigProfile:
    address: str | None = None
    namespace: str | None = None
    api_key: str | None = None
    tls: ClientConfigTLS | None = None
    grpc_meta: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ClientConfigProfile:
        return cls(address=d.get("address"), namespace=d.get("namespace"),
                   api_key=d.get("api_key"), tls=ClientConfigTLS.from_dict(d.get("tls")),
                   grpc_meta=dict(d.get("grpc_meta") or {}))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        for key in ("address", "namespace", "api_key"):
            if (value := getattr(self, key)) is not None:
                d[key] = value
        if self.tls is not None and (tls := self.tls.to_dict()):
            d["tls"] = tls
        if self.grpc_meta:
            d["grpc_meta"] = dict(self.grpc_meta)
        return d

    def to_client_connect_config(self) -> ClientConnectConfig:
        config = ClientConnectConfig()
        if self.address:
            config["target_host"] = self.address
        if self.namespace is not None:
            config["namespace"] = self.namespace
        if self.api_key is not None:
            config["api_key"] = self.api_key
            config["tls"] = True  # an API key implies TLS with default options, as in Temporal
        if self.tls is not None:
            config["tls"] = self.tls.to_connect_tls_config()
        if self.grpc_meta:
            config["rpc_metadata"] = dict(self.grpc_meta)
        return config

    @staticmethod
    def load(profile: str | None = None, *, config_source: DataSource | None = None,
             disable_file: bool = False, disable_env: bool = False,
             config_file_strict: bool = False,
             override_env_vars: Mapping[str, str] | None = None) -> ClientConfigProfile:
        """One profile from the file (unless `disable_file`), with the environment's overrides
        applied (unless `disable_env`); `override_env_vars` stands for os.environ."""
        if disable_file and disable_env:
            raise ConfigError("Invalid configuration: Cannot disable both file and environment "
                              "loading")
        env = os.environ if override_env_vars is None else override_env_vars
        raw: dict[str, Any] = {}
        if not disable_file:
            profiles = _load_profiles(config_source, config_file_strict, env)
            name = profile or (None if disable_env else env.get("TEMPORAL_PROFILE")) or None
            if name is not None and name not in profiles:
                known = ", ".join(sorted(profiles)) or "none"
                raise ConfigError(f"Profile {name!r} not found (profiles in the configuration: "
                                  f"{known}); add [profile.{name}] to the file or name another")
            raw = profiles.get(name or "default", {})
        if not disable_env:
            raw = _apply_env(raw, env)
        return ClientConfigProfile.from_dict(raw)


@dataclass
class ClientConfig:
    profiles: Mapping[str, ClientConfigProfile]

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {name: p.to_dict() for name, p in self.profiles.items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Mapping[str, Any]]) -> ClientConfig:
        return cls(profiles={name: ClientConfigProfile.from_dict(p) for name, p in d.items()})

    @staticmethod
    def load(*, config_source: DataSource | None = None, config_file_strict: bool = False,
             override_env_vars: Mapping[str, str] | None = None) -> ClientConfig:
        """Every profile of the file, without environment overrides (the environment only
        locates the file, through TEMPORAL_CONFIG_FILE)."""
        env = os.environ if override_env_vars is None else override_env_vars
        return ClientConfig.from_dict(_load_profiles(config_source, config_file_strict, env))

    @staticmethod
    def load_client_connect_config(profile: str | None = None, *, config_file: str | None = None,
                                   disable_file: bool = False, disable_env: bool = False,
                                   config_file_strict: bool = False,
                                   override_env_vars: Mapping[str, str] | None = None
                                   ) -> ClientConnectConfig:
        """The keyword arguments for `Client.connect(**config)`."""
        source = Path(config_file) if config_file and not disable_file else None
        return ClientConfigProfile.load(
            profile, config_source=source, disable_file=disable_file, disable_env=disable_env,
            config_file_strict=config_file_strict, override_env_vars=override_env_vars,
        ).to_client_connect_config()


# -- the file ----------------------------------------------------------------------------------

def _default_file() -> Path | None:
    """Where Temporal's SDK looks without TEMPORAL_CONFIG_FILE: the user's config directory."""
    home = Path.home()
    if sys.platform == "win32":
        base = os.environ.get("APPDATA")
        folder = Path(base) if base else None
    elif sys.platform == "darwin":
        folder = home / "Library" / "Application Support"
    else:
        xdg = os.environ.get("XDG_CONFIG_HOME")
        folder = Path(xdg) if xdg and Path(xdg).is_absolute() else home / ".config"
    return None if folder is None else folder / "temporalio" / "temporal.toml"


def _load_profiles(source: DataSource | None, strict: bool,
                   env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    where: str
    if source is None:
        named = env.get("TEMPORAL_CONFIG_FILE")
        source = Path(named) if named else _default_file()
    if isinstance(source, Path):
        where = str(source)
        try:
            text = source.read_text(encoding="utf-8")
        except FileNotFoundError:  # no file is no configuration, as in Temporal
            return {}
        except OSError as e:
            raise ConfigError(f"cannot read the Temporal configuration file {where}: {e}"
                              ) from None
    elif source is None:
        return {}
    else:
        where = "the configuration given"
        text = source if isinstance(source, str) else source.decode("utf-8")
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"Configuration loading error: {where} is not valid TOML: {e}; fix "
                          "the file or point TEMPORAL_CONFIG_FILE at another") from None
    profiles = doc.get("profile", {})
    if not isinstance(profiles, dict):
        raise ConfigError(f"{where}: `profile` must be a table of [profile.NAME] tables")
    return {name: _profile(name, raw, strict, where) for name, raw in profiles.items()}


def _profile(name: str, raw: Any, strict: bool, where: str) -> dict[str, Any]:
    at = f"{where}, [profile.{name}]"
    if not isinstance(raw, dict):
        raise ConfigError(f"{at} must be a table")
    if strict:
        _known(raw, _PROFILE_KEYS, at)
        _known(raw.get("tls") or {}, _TLS_KEYS, f"{at}.tls")
        _known(raw.get("codec") or {}, _CODEC_KEYS, f"{at}.codec")
    out = {k: raw[k] for k in ("address", "namespace", "api_key") if k in raw}
    if isinstance(tls := raw.get("tls"), dict):
        out["tls"] = _tls(tls, f"{at}.tls")
    if isinstance(meta := raw.get("grpc_meta"), dict):
        out["grpc_meta"] = {k.lower(): str(v) for k, v in meta.items()}
    return out


def _known(table: Mapping[str, Any], keys: frozenset[str], at: str) -> None:
    for key in table:
        if key not in keys:
            raise ConfigError(f"Configuration loading error: {at}: unknown field {key!r}, "
                              f"expected one of {', '.join(sorted(keys))}")


def _tls(raw: Mapping[str, Any], at: str) -> dict[str, Any]:
    """A TLS table as `ClientConfigTLS.from_dict` takes it: each certificate {"path": ...} or
    {"data": ...}, never both."""
    out: dict[str, Any] = {k: raw[k] for k in ("disabled", "server_name") if k in raw}
    for key in _TLS_SOURCES:
        path, data = raw.get(f"{key}_path"), raw.get(f"{key}_data")
        if path is not None and data is not None:
            raise ConfigError(f"Invalid configuration: {at}: Cannot specify both {key}_path and "
                              f"{key}_data")
        if path is not None:
            out[key] = {"path": str(path)}
        elif data is not None:
            out[key] = {"data": str(data)}
    return out


# -- the environment ---------------------------------------------------------------------------

_ENV_FIELDS = {
    "TEMPORAL_ADDRESS": "address", "TEMPORAL_NAMESPACE": "namespace",
    "TEMPORAL_API_KEY": "api_key"}
_META_PREFIX = "TEMPORAL_GRPC_META_"


def _apply_env(raw: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    out = dict(raw)
    for var, name in _ENV_FIELDS.items():
        if var in env:
            out[name] = env[var]
    tls_env = {var.removeprefix("TEMPORAL_TLS_").lower(): value for var, value in env.items()
               if var.startswith("TEMPORAL_TLS_")}
    if "TEMPORAL_TLS" in env or tls_env:
        tls = dict(out.get("tls") or {})
        if "TEMPORAL_TLS" in env:
            tls["disabled"] = env["TEMPORAL_TLS"].strip().lower() in ("0", "false")
        if "server_name" in tls_env:
            tls["server_name"] = tls_env["server_name"]
        for key in _TLS_SOURCES:
            path, data = tls_env.get(f"{key}_path"), tls_env.get(f"{key}_data")
            if path is not None and data is not None:
                raise ConfigError(f"Invalid configuration: TEMPORAL_TLS_{key.upper()}_PATH and "
                                  f"TEMPORAL_TLS_{key.upper()}_DATA are both set; unset one")
            if path is not None or data is not None:
                tls[key] = {"path": path} if path is not None else {"data": data}
        out["tls"] = tls
    meta = {var.removeprefix(_META_PREFIX).lower().replace("_", "-"): value
            for var, value in env.items() if var.startswith(_META_PREFIX)}
    if meta:
        out["grpc_meta"] = {**(out.get("grpc_meta") or {}), **meta}
    return out


def _source_of(d: Mapping[str, str] | None) -> DataSource | None:
    if not d:
        return None
    if "data" in d:
        return d["data"]
    return Path(d["path"]) if "path" in d else None


def _read_source(source: DataSource | None) -> bytes | None:
    if source is None:
        return None
    if isinstance(source, Path):
        return source.read_bytes()
    return source.encode("utf-8") if isinstance(source, str) else source
