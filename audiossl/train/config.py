"""Training configuration: one YAML file -> typed dataclasses, with ``--section.key value`` overrides.

A config file has five sections (see ``egs/*/conf/*.yaml``), and may start from another file,
``base: other.yaml`` (relative to it), changing only the keys it gives::

    task: toy_classifier      # a task registered in audiossl/tasks/
    model: {...}              # fields of that task's ModelConfig dataclass (nested dataclasses allowed)
    data: {...}               # DataConfig
    optim: {...}              # OptimConfig
    trainer: {...}            # TrainerConfig

Every value is converted to its dataclass field's type, so ``--optim.lr 1e-4`` on the command line and
``lr: 1e-4`` in YAML (which PyYAML reads as a string) both give a float. Unknown keys are errors that
name the key and where it came from. :func:`config_to_dict` gives the resolved config, which the
trainer writes as ``exp/<tag>/config.yaml`` and stores in every checkpoint and ``model.pt``.

Batch: ``data.batch_size`` is the global batch, the clips of one optimiser update over all
processes, as the papers give it. The trainer splits it (``audiossl.data.sampler.split_global_batch``):
``batch_size / world_size`` clips per process, in forward passes of at most
``data.max_batch_per_device`` clips (the rest is gradient accumulation); so 1, 4 or 8 GPUs, or
``--nproc N`` on CPU, train with the same updates.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

NONE_STRINGS = ("null", "none", "~")
RETIRED_KEYS = {  # keys older configs have, and what replaced them
    "optim.accum_grad": "data.batch_size is the global batch (clips per update over all processes) and "
                        "the trainer derives the accumulation; cap one forward pass with data.max_batch_per_device",
}


class ConfigError(ValueError):
    """A config file or command-line override is malformed; the message names the key and source.

    ``key``: the dotted key at fault when known (``optim.max_updates``), so that a bad value given on
    the command line is blamed on the option, not on the file."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


# --------------------------------------------------------------------------------------------
# The sections
# --------------------------------------------------------------------------------------------
@dataclass
class DataConfig:
    """Where the features are and how batches are made (``audiossl.data.dataset``)."""

    train: str = ""  # dump dir (required), relative to the recipe dir: feats.scp (fbank) or wav.scp (raw)
    valid: str | None = None  # dump dir for validation; None: no validation
    fbank_kind: Literal["beats", "eat"] | None = None  # the front end that turns a raw dump's audio
    # into features (required for raw dumps; an fbank dump's was fixed when it was written)
    frontend: Literal["loader", "device"] = "loader"  # where a raw dump's training features are
    # computed: in the loader workers, or batched on the training device after collation
    norm_mean: float | None = None  # None: "mean" of <train>/stats.json (stats_<kind>.json, raw)
    norm_std: float | None = None  # None: "std" of <train>/stats.json (stats_<kind>.json, raw)
    target_frames: int | None = None  # crop/zero-pad every clip to this; None: pad to the batch's longest
    crop: Literal["random", "active", "start"] = "random"  # training crop of clips longer than target_frames
    # (active: random among the crops with the most frames that are not digital silence)
    valid_crop: Literal["windows", "start"] = "windows"  # validation of clips longer than target_frames:
    # windows = every window scoring cuts them into, scores averaged per clip (audiossl.data.windows),
    # so train.log's accuracy/mAP is the scored one; start = the first target_frames frames only
    valid_hop: int | None = None  # frames between validation windows; None: target_frames // 2, as scoring
    batch_size: int = 8  # the global batch: clips per optimiser update, over all processes
    max_batch_per_device: int | None = None  # most clips of one forward pass; more per process are
    # accumulated (None: the whole share of a process in one pass)
    num_workers: int = 2  # DataLoader worker processes per training process
    reading: Literal["random", "sequential"] = "random"  # random: clips in any order (the same batches
    # on any number of processes); sequential: each loader worker reads its own shards (the dump's ark
    # files) front to back through a shuffle buffer, for network file systems (audiossl.data.sampler.
    # ShardedBatchSampler; needs target_frames)
    shuffle_buffer: int = 1000  # clips in each worker's shuffle buffer (reading: sequential)
    weighted_sampler: bool = False  # label-balanced sampling (AudioSet); see sample_with_replacement
    samples_per_epoch: int | None = None  # clips per epoch; None: the size of the train set
    sample_with_replacement: bool = True  # weighted_sampler draws with replacement; false: each clip at
    # most once per epoch (the official EAT AS-2M fine-tuning's torch.multinomial(..., replacement=False))


@dataclass
class OptimConfig:
    """AdamW with linear warm-up and cosine decay by update count (``audiossl.train.optim``)."""

    lr: float = 1e-3  # peak learning rate
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.01
    decay_norm_and_bias: bool = False  # False: 1-D parameters and biases get no weight decay
    warmup_updates: int = 0  # LR rises linearly from 0 to lr over these updates
    max_updates: int = 1000  # training length; cosine reaches min_lr here; 0: validate and export only
    # Lengths in epochs of the train set instead (> 0 wins over the *_updates above): the trainer
    # sets max_updates = round(max_epochs x updates per epoch), at least 1, and likewise warm-up, so
    # one config trains a 300-clip corpus and a 30,000-clip one for the same number of passes.
    max_epochs: float = 0.0
    warmup_epochs: float = 0.0
    min_lr: float = 0.0
    layer_decay: float = 1.0  # layer-wise LR decay: lr x layer_decay^(num_layers + 1 - layer_id)
    # How a parameter group's LR follows the schedule (``audiossl.train.optim``): "scaled", the whole
    # schedule times the group's lr_scale (min_lr scaled too, warm-up from 0); "fairseq", one cosine
    # schedule per group as fairseq's composite optimiser runs it: from the group's scaled peak down to
    # min_lr itself (clamped to that peak), warm-up from min_lr, the n-th update at step n - 1.
    group_schedule: Literal["scaled", "fairseq"] = "scaled"
    clip_norm: float = 0.0  # gradient clipping by global norm; 0: no clipping (the norm is still logged)


@dataclass
class TrainerConfig:
    """The training loop (``audiossl.train.trainer``)."""

    seed: int = 0
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU
    compile: bool = False  # torch.compile the training model
    log_interval: int = 100  # updates between progress lines
    valid_interval: int = 1000  # updates between validations
    save_interval: int = 1000  # updates between checkpoints/checkpoint_<update>.pt
    keep_last: int = 2  # numbered checkpoints kept (at least 2: the newest may be mid-write)
    keep_best: int = 1  # best models (by best_metric) kept as checkpoints/best_<update>.pt
    best_metric: str = "loss"  # a validation stat or metric, e.g. loss, mAP, acc
    best_mode: Literal["min", "max"] = "min"
    ema_decay: float = 0.0  # > 0: keep an EMA of the weights, validate and export it
    final_model: Literal["last", "best"] = "last"  # what model.pt holds


@dataclass
class TrainConfig:
    """A whole training config. ``model`` is an instance of the task's ModelConfig."""

    task: str
    model: Any
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)


# --------------------------------------------------------------------------------------------
# Conversion of raw values (YAML or command-line strings) to field types
# --------------------------------------------------------------------------------------------
class CliValue(str):
    """A value typed on the command line: always a string, parsed by the field type it lands in."""


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _parse_cli_yaml(value: CliValue, where: str) -> Any:
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError as e:
        raise ConfigError(f"{where}: cannot parse {value!r}: {e}") from None


def convert_value(value: Any, tp: Any, where: str) -> Any:
    """``value`` converted to type ``tp`` (a resolved annotation); ConfigError naming ``where`` if it
    cannot be. Strings are parsed for numbers and booleans (YAML reads ``1e-4`` as a string)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    cli = isinstance(value, CliValue)

    if tp is Any:
        return _parse_cli_yaml(value, where) if cli else value

    if origin in (typing.Union, types.UnionType):
        non_none = [a for a in args if a is not type(None)]
        if value is None or (cli and value.strip().lower() in NONE_STRINGS):
            if len(non_none) < len(args):
                return None
            raise ConfigError(f"{where}: null is not allowed here (expected {_type_name(tp)})")
        errors = []
        for a in non_none:
            try:
                return convert_value(value, a, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError("; ".join(errors))

    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
        return str(value) if cli else value

    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        raise ConfigError(f"{where}: expected true or false, got {value!r}")

    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value.strip().replace("_", ""))
            except ValueError:
                pass
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{where}: expected an integer, got {value!r}")

    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {value!r}")

    if tp is str:
        if isinstance(value, str):
            return str(value)
        raise ConfigError(f"{where}: expected a string, got {value!r} (quote it in YAML)")

    if origin in (list, tuple) or tp in (list, tuple):
        if cli:
            text = value.strip()
            value = _parse_cli_yaml(value, where) if text.startswith("[") else [v for v in text.split(",") if v]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}: {value!r}")
            items = [convert_value(_as_cli(v, cli), a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args))]
            return tuple(items)
        item_tp = args[0] if args else Any
        items = [convert_value(_as_cli(v, cli), item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if (origin is tuple or tp is tuple) else items

    if origin is dict or tp is dict:
        if cli:
            value = _parse_cli_yaml(value, where)
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        key_tp, val_tp = args if args else (Any, Any)
        return {
            convert_value(k, key_tp, f"{where}.{k}"): convert_value(v, val_tp, f"{where}.{k}") for k, v in value.items()
        }

    if dataclasses.is_dataclass(tp):
        if cli:
            value = _parse_cli_yaml(value, where)
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping of {tp.__name__} fields, got {value!r}")
        return dataclass_from_dict(tp, value, where)

    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ConfigError(f"{where}: cannot convert {value!r} to {_type_name(tp)}")


def _as_cli(v: Any, cli: bool) -> Any:
    return CliValue(v) if cli and isinstance(v, str) else v


def dataclass_from_dict(cls: type, data: dict[str, Any], where: str = "config") -> Any:
    """Build dataclass ``cls`` from a mapping, converting each value to its field type.

    Unknown keys raise a ConfigError naming ``where.<key>`` and the known keys; missing keys take the
    field defaults (a field without a default must be present).
    """
    assert dataclasses.is_dataclass(cls), f"{cls!r} is not a dataclass"
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in data if k not in fields]
    if unknown:
        prefix = f"{where}." if where else ""
        key = f"{prefix}{unknown[0]}"
        if key in RETIRED_KEYS:
            raise ConfigError(f"{key} is no longer a key: {RETIRED_KEYS[key]}", key=key)
        raise ConfigError(
            f"unknown key {key} (known keys of {where or cls.__name__}: {', '.join(fields)})", key=key
        )
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            key = f"{where}.{name}" if where else name
            try:
                kwargs[name] = convert_value(data[name], hints[name], key)
            except ConfigError as e:
                if e.key is None:
                    e.key = key
                raise
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"missing key {where}.{name} ({_type_name(hints[name])})")
    return cls(**kwargs)


# --------------------------------------------------------------------------------------------
# Command-line overrides
# --------------------------------------------------------------------------------------------
def parse_overrides(args: list[str]) -> list[tuple[str, CliValue]]:
    """``["--optim.lr", "1e-4", "--data.crop=start"]`` -> ``[("optim.lr", "1e-4"), ("data.crop", "start")]``."""
    out = []
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or len(arg) <= 2:
            raise ConfigError(f"command line: expected --section.key value, got {arg!r}")
        key = arg[2:]
        if "=" in key:
            key, value = key.split("=", 1)
            i += 1
        else:
            if i + 1 >= len(args):
                raise ConfigError(f"command line: option --{key} needs a value")
            value = args[i + 1]
            i += 2
        key = key.replace("-", "_")
        out.append((key, CliValue(value)))
    return out


def _set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = raw
    for p in parts[:-1]:
        if node.get(p) is None:
            node[p] = {}
        if not isinstance(node[p], dict):
            raise ConfigError(f"command line: --{key}: {p} is not a section")
        node = node[p]
    node[parts[-1]] = value


def _check_override_key(cfg_types: dict[str, Any], key: str) -> None:
    """Raise a ConfigError for an override whose key names no field (before any value is converted)."""
    parts = key.split(".")
    tp: Any = None
    fields = cfg_types
    for depth, p in enumerate(parts):
        if fields is None or p not in fields:
            if key in RETIRED_KEYS:
                raise ConfigError(f"command line: --{key} is no longer an option: {RETIRED_KEYS[key]}")
            known = ", ".join(fields) if fields else "none"
            raise ConfigError(f"command line: unknown option --{key} ({'.'.join(parts[:depth]) or 'top level'} keys: {known})")
        tp = fields[p]
        fields = _fields_of(tp)


def _fields_of(tp: Any) -> dict[str, Any] | None:
    """Field name -> type of a dataclass type (or of the dataclass inside an Optional), else None."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if dataclasses.is_dataclass(a)]
        tp = inner[0] if inner else None
    if tp is not None and dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        return {f.name: hints[f.name] for f in dataclasses.fields(tp) if f.init}
    return None


# --------------------------------------------------------------------------------------------
# Loading, validating, saving
# --------------------------------------------------------------------------------------------
def load_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML training config, apply ``--section.key value`` overrides, convert and validate.

    Raises ConfigError naming the file (or the command line) and the offending key.
    """
    raw, chain = _read_config_file(Path(path), ())
    source = " on ".join(chain)  # "variant.yaml on base.yaml": where a bad value may come from
    return config_from_dict(raw, overrides=parse_overrides(overrides or []), source=source)


def _read_config_file(path: Path, seen: tuple[Path, ...]) -> tuple[dict[str, Any], list[str]]:
    """The mapping of one config file, on top of the file its ``base:`` key names (a path relative
    to it), and the chain of files read, this one first (see :func:`_merge`)."""
    if not path.is_file():
        where = f" (the base of {seen[-1]})" if seen else ""
        raise ConfigError(f"{path}: no such config file{where}")
    if path.resolve() in {s.resolve() for s in seen}:
        raise ConfigError(f"{path}: base: the files name each other in a loop ({' -> '.join(map(str, seen + (path,)))})")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the config must be a mapping of sections (task, model, data, optim, trainer)")
    base = raw.pop("base", None)
    if base is None:
        return raw, [str(path)]
    if not isinstance(base, str):
        raise ConfigError(f"{path}: base: expected the path of a config file, got {base!r}")
    merged, chain = _read_config_file(path.parent / base, seen + (path,))
    return _merge(merged, raw), [str(path), *chain]


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``: mappings merge key by key, at any depth; other values replace."""
    out = dict(base)
    for key, value in top.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def config_from_dict(
    raw: dict[str, Any], overrides: list[tuple[str, Any]] | None = None, source: str = "config"
) -> TrainConfig:
    """Build a TrainConfig from a raw mapping (a parsed YAML file or a saved config.yaml)."""
    from audiossl.tasks.abs_task import get_task

    raw = _deepcopy_mapping(raw)
    overrides = overrides or []
    task_name = next((v for k, v in overrides if k == "task"), raw.get("task"))
    if not task_name:
        raise ConfigError(f"{source}: missing key 'task' (the registered name of what to train)")
    try:
        task = get_task(str(task_name))
    except KeyError as e:
        raise ConfigError(f"{source}: task: {e.args[0]}") from None
    model_cls = task.ModelConfig
    top_types = {
        "task": str,
        "model": model_cls,
        "data": DataConfig,
        "optim": OptimConfig,
        "trainer": TrainerConfig,
    }
    for key in raw:
        if key not in top_types:
            raise ConfigError(f"{source}: unknown key {key!r} (known sections: {', '.join(top_types)})")
    for key, value in overrides:
        _check_override_key(top_types, key)
        _set_dotted(raw, key, value)

    cli_keys = [k for k, _ in overrides]

    def blamed(e: ConfigError) -> ConfigError:
        """``e`` prefixed with where the bad value came from: the option, or the file."""
        if e.key is not None and any(e.key == k or e.key.startswith(k + ".") for k in cli_keys):
            return ConfigError(f"command line: --{e}", key=e.key)
        return ConfigError(f"{source}: {e}", key=e.key)

    def section(name: str, cls: type) -> Any:
        value = raw.get(name)
        if value is None:
            value = {}
        if isinstance(value, CliValue):
            value = _parse_cli_yaml(value, name)
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: section {name!r} must be a mapping, got {value!r}")
        try:
            return dataclass_from_dict(cls, value, name)
        except ConfigError as e:
            raise blamed(e) from None

    cfg = TrainConfig(
        task=str(task_name),
        model=section("model", model_cls),
        data=section("data", DataConfig),
        optim=section("optim", OptimConfig),
        trainer=section("trainer", TrainerConfig),
    )
    try:
        validate_config(cfg)
    except ConfigError as e:
        raise blamed(e) from None
    return cfg


def _deepcopy_mapping(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _deepcopy_mapping(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_deepcopy_mapping(v) for v in x]
    return x


def validate_config(cfg: TrainConfig) -> None:
    """Check values that types alone cannot; ConfigError naming the key."""
    d, o, t = cfg.data, cfg.optim, cfg.trainer
    checks = [
        (bool(d.train), "data.train", "is required: the feature dump dir to train on"),
        (d.batch_size >= 1, "data.batch_size", "must be >= 1"),
        (d.max_batch_per_device is None or d.max_batch_per_device >= 1, "data.max_batch_per_device",
         "must be >= 1 or null"),
        (d.num_workers >= 0, "data.num_workers", "must be >= 0"),
        (d.target_frames is None or d.target_frames >= 1, "data.target_frames", "must be >= 1 or null"),
        (d.valid_hop is None or d.valid_hop >= 1, "data.valid_hop", "must be >= 1 or null"),
        (d.samples_per_epoch is None or d.samples_per_epoch >= 1, "data.samples_per_epoch", "must be >= 1 or null"),
        (d.norm_std is None or d.norm_std > 0, "data.norm_std", "must be > 0"),
        ((d.norm_mean is None) == (d.norm_std is None), "data.norm_mean", "and data.norm_std must be set together"),
        (o.lr >= 0, "optim.lr", "must be >= 0"),
        (o.max_updates >= 0, "optim.max_updates", "must be >= 0 (0: only validate and write model.pt)"),
        (0 <= o.warmup_updates <= o.max_updates, "optim.warmup_updates", "must be in [0, optim.max_updates]"),
        (0 <= o.min_lr <= o.lr, "optim.min_lr", "must be in [0, optim.lr]"),
        (0 < o.layer_decay <= 1, "optim.layer_decay", "must be in (0, 1]"),
        (o.clip_norm >= 0, "optim.clip_norm", "must be >= 0 (0 = no clipping)"),
        (all(0 <= b < 1 for b in o.betas), "optim.betas", "must be in [0, 1)"),
        (t.log_interval >= 1, "trainer.log_interval", "must be >= 1"),
        (t.valid_interval >= 1, "trainer.valid_interval", "must be >= 1"),
        (t.save_interval >= 1, "trainer.save_interval", "must be >= 1"),
        (t.keep_last >= 2, "trainer.keep_last", "must be >= 2 (the newest checkpoint may be mid-write)"),
        (t.keep_best >= 0, "trainer.keep_best", "must be >= 0"),
        (0 <= t.ema_decay < 1, "trainer.ema_decay", "must be in [0, 1) (0 = no EMA)"),
        (
            t.final_model == "last" or (d.valid is not None and t.keep_best >= 1),
            "trainer.final_model",
            "best needs data.valid and trainer.keep_best >= 1",
        ),
    ]
    for ok, key, msg in checks:
        if not ok:
            raise ConfigError(f"{key} {msg} (got {_get_dotted(cfg, key)!r})", key=key)


def _get_dotted(cfg: Any, key: str) -> Any:
    for p in key.split("."):
        cfg = getattr(cfg, p)
    return cfg


def plain(x: Any) -> Any:
    """Dataclasses -> dicts, tuples -> lists, paths -> strings: YAML- and torch.save-safe values."""
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return {f.name: plain(getattr(x, f.name)) for f in dataclasses.fields(x)}
    if isinstance(x, (list, tuple)):
        return [plain(v) for v in x]
    if isinstance(x, dict):
        return {k: plain(v) for k, v in x.items()}
    if isinstance(x, Path):
        return str(x)
    return x


def config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """The resolved config as plain YAML-safe types (tuples become lists)."""
    return plain(cfg)


def save_config(cfg: TrainConfig, path: str | Path) -> None:
    """Write the resolved config as YAML (loadable again with :func:`load_config`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False, default_flow_style=None))
    tmp.replace(path)
