"""Docs that cannot drift: every file, function and config key the docs and docstrings name exists,
the module map in docs/architecture.md has one line per module, and each config Enum matches its
registry."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
import re
import shlex
from enum import Enum
from pathlib import Path

import pytest

import reft
from reft.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "reft"
DOCS = [ROOT / "README.md", ROOT / "bench" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SOURCES = sorted(PACKAGE.rglob("*.py"))

CODE_SPAN = re.compile(r"`([^`\n]+)`")
REPO_PATH = re.compile(r"^[\w.-]+(/[\w.-]+)+\.(py|md|yaml|yml|sh|toml)$")
DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")
OUTSIDE_THE_REPO = ("runs/", "data/", "data_dir/", "R/", "exps/", "trl/", "transformers/")
"""Path prefixes that name run outputs or files of other repositories (the reference's code)."""
FILE_SUFFIXES = {"py", "md", "json", "jsonl", "sh", "yaml", "yml", "txt", "png", "safetensors"}
"""A dotted span ending in one of these is a file name (`metrics.jsonl`), not a Python name."""
NOT_OURS = {"self", "args", "run", "torch", "np", "os", "sys", "model", "state", "out", "result"}
"""First components of dotted spans that are variables or other libraries, not reft's modules."""
COMMANDS = {
    "sft": "reft.train.config:SFTConfig",
    "train": "reft.train.config:PPOConfig",
    "self-train": "reft.train.config:SelfTrainConfig",
    "rm": "reft.train.config:RewardModelConfig",
    "eval": "reft.evaluate.config:EvalConfig",
    "sample": "reft.evaluate.config:SampleConfig",
    "demo": "reft.demo.config:DemoConfig",
}


def _texts() -> dict[Path, str]:
    return {path: path.read_text(encoding="utf-8") for path in DOCS + SOURCES}


def _spans() -> list[tuple[Path, str]]:
    return [(path, span.strip().removesuffix("()")) for path, text in _texts().items()
            for span in CODE_SPAN.findall(text)]  # fmt: skip


def _modules() -> dict[str, list[str]]:
    """Last component -> full names of every reft module and package (`stats` -> reft.algos.stats)."""
    names: dict[str, list[str]] = {"reft": ["reft"]}
    for info in pkgutil.walk_packages(reft.__path__, "reft."):
        names.setdefault(info.name.rsplit(".", 1)[1], []).append(info.name)
    return names


def _config_fields() -> set[str]:
    fields: set[str] = set()
    for module in ("reft.train.config", "reft.evaluate.config", "reft.demo.config",
                   "reft.generation.config", "reft.data.synthetic"):  # fmt: skip
        for _, cls in inspect.getmembers(importlib.import_module(module), dataclasses.is_dataclass):
            fields |= {field.name for field in dataclasses.fields(cls)}
    return fields


def _resolves(full: str) -> bool:
    """Import the longest module prefix of `full`, then follow the rest as attributes."""
    parts = full.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            fields = (
                {f.name for f in dataclasses.fields(target)}
                if dataclasses.is_dataclass(target)
                else set()
            )
            if not hasattr(target, name):  # a dataclass field without a default counts
                return name in fields or name in getattr(target, "__annotations__", {})
            target = getattr(target, name)
        return True
    return False


def test_every_repository_path_named_in_docs_and_docstrings_exists():
    missing = sorted({f"{path.relative_to(ROOT)}: {span}" for path, span in _spans()
                      if REPO_PATH.match(span) and not span.startswith(OUTSIDE_THE_REPO)
                      and not span.split("/")[0].isupper()  # a placeholder: OUT/seed_N/...
                      and not any((base / span).exists()
                                  for base in (ROOT, ROOT / "src", PACKAGE, path.parent))})  # fmt: skip
    assert missing == [], "paths named but absent:\n" + "\n".join(missing)


def test_docs_cite_no_file_outside_the_repository():
    """A user's clone has no ../shared (the development machine's notes): cite what ships."""
    cited = [
        str(path.relative_to(ROOT)) for path, text in _texts().items() if "../shared/docs" in text
    ]
    assert cited == []


def test_every_reft_name_in_docs_and_docstrings_exists():
    """`models.value.ActorCritic`, `reft.algos.gae`, `stats.explained_variance`, `config.kl_coef`:
    a span whose first component is one of reft's modules must resolve (rename a function and this
    fails until the docs follow)."""
    modules, fields = _modules(), _config_fields()
    missing = set()
    for path, span in _spans():
        first, _, rest = span.partition(".")
        if not DOTTED.match(span) or first in NOT_OURS or first not in modules:
            continue
        if span.rsplit(".", 1)[1] in FILE_SUFFIXES:
            continue
        if first == "config" and rest.split(".")[0] in fields:
            continue
        if not any(_resolves(f"{module}.{rest}") for module in modules[first]):
            missing.add(f"{path.relative_to(ROOT)}: {span}")
    assert sorted(missing) == [], "names that do not exist:\n" + "\n".join(sorted(missing))


def _command_lines() -> list[tuple[Path, str, list[str]]]:
    """(file, subcommand, key=value words) of every `reft <command> ...` line in the docs."""
    found = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8").replace("\\\n", " ")
        for line in text.splitlines():
            words = line.strip().split("#")[0].split()
            if len(words) < 2 or words[0] != "reft" or words[1] not in COMMANDS:
                continue
            try:
                words = shlex.split(" ".join(words))
            except ValueError:
                continue
            keys = [w for w in words[2:] if re.match(r"^[a-z_][\w.]*=", w)]
            found.append((path, words[1], keys))
    return found


def test_every_key_value_override_in_the_docs_is_a_config_key():
    lines = _command_lines()
    assert len(lines) > 10, "the docs' command lines were not found"
    unknown = []
    for path, command, overrides in lines:
        module, name = COMMANDS[command].split(":")
        schema = getattr(importlib.import_module(module), name)
        for override in overrides:
            try:
                load_config(schema, None, [override])
            except ConfigError as error:
                if "unknown key" in str(error):
                    unknown.append(f"{path.relative_to(ROOT)}: reft {command} {override}")
    assert unknown == [], "overrides of keys that do not exist:\n" + "\n".join(unknown)


def _module_tree() -> list[str]:
    """The module names of the `src/reft/` tree in docs/architecture.md (the README keeps only the
    top-level areas)."""
    page = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    block = page[page.index("\nsrc/reft/\n") :]
    block = block[: block.index("```")]
    return [line.split()[0] for line in block.splitlines()[2:] if line.startswith("  ")]


def test_architecture_tree_has_one_line_per_module():
    listed = _module_tree()
    # A package's __init__.py counts as a module only where it holds code of its own.
    modules = sorted(str(p.relative_to(PACKAGE)) for p in SOURCES
                     if p.name != "__init__.py" or "\ndef " in p.read_text(encoding="utf-8"))  # fmt: skip
    assert [m for m in modules if m not in listed] == [], "modules missing from the tree"
    assert [m for m in listed if m.endswith(".py") and m not in modules] == [], "stale tree lines"
    assert len(listed) == len(set(listed)), "a module listed twice"


def _registry_pairs():
    from reft.algos.kl import KL_ESTIMATORS
    from reft.algos.normalize import WHITENERS
    from reft.answers.compare import COMPARATORS
    from reft.answers.extract import LENIENT_PARSERS, STRICT_PARSERS
    from reft.data.example import AnswerKind
    from reft.models.value import VALUE_MODELS
    from reft.train import config
    from reft.train.ppo import LOSS_AGGREGATIONS
    from reft.train.rollout import ADVANTAGE_ESTIMATORS
    from reft.train.self_train import RUNNERS

    return [
        (config.KLEstimator, KL_ESTIMATORS),
        (config.Whitening, WHITENERS),
        (config.ValueModelKind, VALUE_MODELS),
        (config.LossAggregation, LOSS_AGGREGATIONS),
        (config.Estimator, ADVANTAGE_ESTIMATORS),
        (config.SelfTrainMode, RUNNERS),
        (AnswerKind, COMPARATORS),
        (AnswerKind, STRICT_PARSERS),
        (AnswerKind, LENIENT_PARSERS),
    ]


@pytest.mark.parametrize("index", range(9))
def test_each_config_enum_matches_its_registry(index):
    enum, registry = _registry_pairs()[index]
    keys = {key.value if isinstance(key, Enum) else key for key in registry}
    assert keys == {member.value for member in enum}, enum.__name__


def test_schedules_and_engines_are_ones_the_libraries_know():
    from transformers import SchedulerType

    from reft.generation.config import GenerationEngine
    from reft.train.config import RolloutBackendKind, Schedule

    assert {s.value for s in Schedule} <= {s.value for s in SchedulerType}
    assert {e.value for e in GenerationEngine} | {"vllm"} == {b.value for b in RolloutBackendKind}


def test_demo_help_shows_the_shipped_recipe(capsys):
    """`reft demo --help` shows what a plain `reft demo` runs (1,000 training questions, 150 PPO
    steps), not the dataclass defaults under the recipe (4,000 questions)."""
    from reft import cli

    with pytest.raises(SystemExit):
        cli.main(["demo", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "'train_size': 1000" in text and "'max_steps': 150" in text
    assert "'train_size': 4000" not in text
