"""The reproduction harness: ``paper/tables.yaml``, results JSON, markdown tables and REPRODUCTION.md.

Schema of ``packages/<paper>/paper/tables.yaml`` (validated by :func:`load_tables`)::

    paper: dckd
    title: Dynamic Contrastive Knowledge Distillation for Efficient Image Restoration
    tables:
      - id: table2                      # used by --table
        title: PSNR/SSIM of distilled SwinIR students
        source: Table 2                 # where in the paper
        presets: [smoke, mini, full]    # presets this table can run at
        seeds: {smoke: [0], mini: [0, 1, 2], full: [0]}   # defaults for --seeds
        metrics:                        # the columns
          - {id: psnr, label: PSNR-Y (dB), higher_is_better: true, digits: 2, tolerance: 0.1}
        rows:                           # the paper's rows
          - id: swinir_x2_dckd
            label: DCKD, SwinIR x2, Set5
            config: configs/full/swinir_x2_dckd.yaml
            paper: {psnr: 38.20}
            tolerance: {psnr: 0.15}     # optional, per metric; else the metric's
            higher_is_better: {}        # optional, per metric; else the metric's
            status: pending             # pending | reproduced | partial | known_gap | not_reproducible
            note: ""

A package's reproduce callable receives a :class:`ReproRequest` and returns a :class:`TableResult`, whose
rows carry per-seed metrics and optionally ``paper_row`` (the id of the tables.yaml row whose numbers
stand beside it). :func:`run_reproduction` times the run, writes ``<out>/<table>.json`` and ``.md``
atomically, and returns the markdown. Per-(row, seed) results go to an append-only ledger first
(``<table>.partial.jsonl``), so a killed run resumes where it stopped and loses no finished result.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import os
import platform
import re
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from paperzoo_shared.config import config_hash, to_dict
from paperzoo_shared.metrics.stats import mean_std
from paperzoo_shared.registry import PRESETS, Paper, RegistryError, check_preset

RESULTS_SCHEMA_VERSION = 1
RowStatus = Literal["pending", "reproduced", "partial", "known_gap", "not_reproducible"]
ROW_STATUSES: tuple[str, ...] = ("pending", "reproduced", "partial", "known_gap", "not_reproducible")
DEFAULT_SEEDS = {"smoke": [0], "mini": [0, 1, 2], "mini-long": [0, 1, 2], "full": [0]}


class TablesError(ValueError):
    """paper/tables.yaml does not follow the schema; the message names the file and the entry."""


# ----------------------------------------------------------------------------------------------------
# paper/tables.yaml
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricSpec:
    id: str
    label: str
    higher_is_better: bool = True
    digits: int = 2
    tolerance: float | None = None


@dataclass(frozen=True)
class PaperRow:
    id: str
    label: str
    paper: dict[str, float]
    config: str | None = None
    tolerance: dict[str, float] = field(default_factory=dict)
    higher_is_better: dict[str, bool] = field(default_factory=dict)
    status: RowStatus = "pending"
    note: str = ""


@dataclass(frozen=True)
class TableSpec:
    id: str
    title: str
    source: str
    presets: tuple[str, ...]
    seeds: dict[str, list[int]]
    metrics: tuple[MetricSpec, ...]
    rows: tuple[PaperRow, ...]

    def metric(self, metric_id: str) -> MetricSpec | None:
        return next((m for m in self.metrics if m.id == metric_id), None)

    def row(self, row_id: str) -> PaperRow:
        for row in self.rows:
            if row.id == row_id:
                return row
        raise TablesError(
            f"table {self.id} has no paper row {row_id!r}; rows: {', '.join(r.id for r in self.rows)}"
        )


@dataclass(frozen=True)
class TablesFile:
    paper: str
    title: str
    tables: tuple[TableSpec, ...]
    path: Path

    def table(self, table_id: str) -> TableSpec:
        for table in self.tables:
            if table.id == table_id:
                return table
        raise RegistryError(
            f"paper {self.paper!r} has no table {table_id!r}; valid tables: {', '.join(t.id for t in self.tables)}"
        )


def _require(mapping: Mapping[str, Any], key: str, where: str, kind: type | tuple[type, ...]) -> Any:
    if key not in mapping:
        raise TablesError(f"{where}: missing required key '{key}'")
    value = mapping[key]
    if not isinstance(value, kind):
        raise TablesError(f"{where}: '{key}' must be {getattr(kind, '__name__', kind)}, got {value!r}")
    return value


def _check_keys(mapping: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(mapping) - allowed)
    if unknown:
        raise TablesError(f"{where}: unknown key '{unknown[0]}'; allowed: {', '.join(sorted(allowed))}")


def load_tables(path: str | Path) -> TablesFile:
    """Reads and validates a ``paper/tables.yaml``."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError as error:
        raise TablesError(f"{path}: file not found") from error
    except yaml.YAMLError as error:
        raise TablesError(f"{path}: not valid YAML: {error}") from error
    if not isinstance(data, dict):
        raise TablesError(f"{path}: must be a mapping with keys paper, title, tables")
    _check_keys(data, {"paper", "title", "tables"}, str(path))
    paper = _require(data, "paper", str(path), str)
    tables = []
    for t_index, raw_table in enumerate(_require(data, "tables", str(path), list)):
        where = f"{path}: tables[{t_index}]"
        if not isinstance(raw_table, dict):
            raise TablesError(f"{where}: must be a mapping")
        _check_keys(raw_table, {"id", "title", "source", "presets", "seeds", "metrics", "rows"}, where)
        table_id = _require(raw_table, "id", where, str)
        where = f"{path}: table {table_id}"
        presets = tuple(raw_table.get("presets", PRESETS))
        for preset in presets:
            if preset not in PRESETS:
                raise TablesError(f"{where}: unknown preset {preset!r}; valid: {', '.join(PRESETS)}")
        seeds = {**DEFAULT_SEEDS, **(raw_table.get("seeds") or {})}
        metrics = []
        for m_index, raw_metric in enumerate(_require(raw_table, "metrics", where, list)):
            m_where = f"{where}: metrics[{m_index}]"
            if not isinstance(raw_metric, dict):
                raise TablesError(f"{m_where}: must be a mapping")
            _check_keys(raw_metric, {f.name for f in dataclasses.fields(MetricSpec)}, m_where)
            _require(raw_metric, "id", m_where, str)
            metrics.append(MetricSpec(**{"label": raw_metric["id"], **raw_metric}))
        metric_ids = {m.id for m in metrics}
        rows = []
        for r_index, raw_row in enumerate(raw_table.get("rows") or []):
            r_where = f"{where}: rows[{r_index}]"
            if not isinstance(raw_row, dict):
                raise TablesError(f"{r_where}: must be a mapping")
            _check_keys(raw_row, {f.name for f in dataclasses.fields(PaperRow)}, r_where)
            row_id = _require(raw_row, "id", r_where, str)
            r_where = f"{where}: row {row_id}"
            paper_values = raw_row.get("paper") or {}
            for key in (
                *paper_values,
                *(raw_row.get("tolerance") or {}),
                *(raw_row.get("higher_is_better") or {}),
            ):
                if key not in metric_ids:
                    raise TablesError(
                        f"{r_where}: metric {key!r} is not a column; columns: {', '.join(sorted(metric_ids))}"
                    )
            status = raw_row.get("status", "pending")
            if status not in ROW_STATUSES:
                raise TablesError(f"{r_where}: status {status!r} is not one of {', '.join(ROW_STATUSES)}")
            rows.append(
                PaperRow(
                    id=row_id,
                    label=raw_row.get("label", row_id),
                    paper={k: float(v) for k, v in paper_values.items()},
                    config=raw_row.get("config"),
                    tolerance={k: float(v) for k, v in (raw_row.get("tolerance") or {}).items()},
                    higher_is_better=dict(raw_row.get("higher_is_better") or {}),
                    status=status,
                    note=raw_row.get("note", ""),
                )
            )
        tables.append(
            TableSpec(
                id=table_id,
                title=_require(raw_table, "title", where, str),
                source=raw_table.get("source", ""),
                presets=presets,
                seeds={k: [int(s) for s in v] for k, v in seeds.items()},
                metrics=tuple(metrics),
                rows=tuple(rows),
            )
        )
    ids = [t.id for t in tables]
    if len(ids) != len(set(ids)):
        raise TablesError(f"{path}: duplicate table ids in {ids}")
    return TablesFile(paper=paper, title=data.get("title", paper), tables=tuple(tables), path=path)


# ----------------------------------------------------------------------------------------------------
# The request a package's reproduce callable receives, and what it returns
# ----------------------------------------------------------------------------------------------------


class RunLedger:
    """Append-only record of finished (row, seed) results, so an interrupted run resumes.

    Each line is ``{"row", "seed", "fingerprint", "metrics", "commit", "wall_s", "cpu_s"}``; a result counts
    only for the same fingerprint (normally the hash of the row's resolved config), so a changed config
    reruns. ``commit`` is the code that computed it; ``wall_s``/``cpu_s`` the time spent since the previous
    record of the same invocation, so a resumed run can add up the time of every invocation. A line cut off
    by a kill is skipped alone: the next record starts on a line of its own.
    """

    def __init__(self, path: Path, *, commit: str | None = None, fresh: bool = False):
        self.path = path
        self.commit = commit
        self._done: dict[tuple[str, int, str], dict[str, Any]] = {}
        self._restored: dict[tuple[str, int, str], dict[str, Any]] = {}
        self._clock = (time.perf_counter(), cpu_time())
        if fresh:
            path.unlink(missing_ok=True)
        if path.is_file():
            for line in path.read_text().splitlines():
                try:
                    record = json.loads(line)
                    key = (record["row"], int(record["seed"]), record["fingerprint"])
                    metrics = {k: float(v) for k, v in record["metrics"].items()}
                except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
                    continue  # a line cut off by a kill; only that result is recomputed
                self._done[key] = {**record, "metrics": metrics}

    def get(self, row: str, seed: int, fingerprint: str) -> dict[str, float] | None:
        record = self._done.get((row, seed, fingerprint))
        if record is None:
            return None
        self._restored[(row, seed, fingerprint)] = record
        return record["metrics"]

    def put(self, row: str, seed: int, fingerprint: str, metrics: Mapping[str, float]) -> None:
        metrics = {k: float(v) for k, v in metrics.items()}
        wall, cpu = time.perf_counter(), cpu_time()
        record = {
            "row": row,
            "seed": seed,
            "fingerprint": fingerprint,
            "metrics": metrics,
            "commit": self.commit,
            "wall_s": round(wall - self._clock[0], 3),
            "cpu_s": round(cpu - self._clock[1], 3),
        }
        self._clock = (wall, cpu)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        cut = (
            self.path.is_file()
            and self.path.stat().st_size > 0
            and not self.path.read_bytes().endswith(b"\n")
        )
        with self.path.open("a") as handle:
            handle.write(("\n" if cut else "") + json.dumps(record) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        self._done[(row, seed, fingerprint)] = record

    def restored(self) -> list[dict[str, Any]]:
        """The results this invocation took from the ledger instead of computing them."""
        return [
            {"row": row, "seed": seed, "commit": record.get("commit")}
            for (row, seed, _), record in self._restored.items()
        ]

    def restored_time(self) -> tuple[float, float]:
        """Wall and CPU seconds that earlier invocations spent on the restored results."""
        records = self._restored.values()
        return (
            sum(float(r.get("wall_s") or 0.0) for r in records),
            sum(float(r.get("cpu_s") or 0.0) for r in records),
        )


def _progress(message: str) -> None:
    """The harness's per (row, seed) progress, on stderr so that stdout stays the results."""
    if not os.environ.get("PAPERZOO_QUIET"):
        print(f"paperzoo: {message}", file=sys.stderr, flush=True)


@dataclass
class ReproRequest:
    """Everything a package's reproduce callable needs to run one table."""

    paper: Paper
    table: TableSpec
    preset: str
    seeds: list[int]
    out_dir: Path
    config_dir: Path
    overrides: list[str] = field(default_factory=list)
    ledger: RunLedger | None = None

    def cached(
        self, row: str, seed: int, compute: Callable[[], Mapping[str, float]], fingerprint: Any = ""
    ) -> dict[str, float]:
        """Returns the ledger's result for (row, seed), or runs ``compute`` and records it first."""
        key = fingerprint if isinstance(fingerprint, str) else config_hash(fingerprint)
        where = f"{self.paper.name}/{self.table.id} [{self.preset}] row {row}, seed {seed}"
        if self.ledger is not None:
            done = self.ledger.get(row, seed, key)
            if done is not None:
                _progress(f"{where}: restored from {self.ledger.path.name}")
                return done
        _progress(f"{where}: running")
        start = time.perf_counter()
        metrics = {k: float(v) for k, v in compute().items()}
        if self.ledger is not None:
            self.ledger.put(row, seed, key, metrics)
        _progress(f"{where}: done in {time.perf_counter() - start:.1f} s")
        return metrics


@dataclass
class RowResult:
    """One measured row: per metric, the value of each seed."""

    id: str
    label: str
    metrics: dict[str, dict[int, float]]
    paper_row: str | None = None
    note: str = ""

    @classmethod
    def from_seed_metrics(
        cls, id: str, label: str, per_seed: Mapping[int, Mapping[str, float]], **kwargs: Any
    ) -> RowResult:
        """Builds a row from ``{seed: {metric: value}}``."""
        metrics: dict[str, dict[int, float]] = {}
        for seed, values in per_seed.items():
            for name, value in values.items():
                metrics.setdefault(name, {})[int(seed)] = float(value)
        return cls(id=id, label=label, metrics=metrics, **kwargs)


@dataclass
class TableResult:
    rows: list[RowResult]
    config: Any = None
    """The resolved config (dataclass or mapping) that produced the table; hashed into the results."""
    notes: list[str] = field(default_factory=list)
    """Sentences printed under the table (e.g. a confidence interval, a plot's path)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Anything else worth keeping in the JSON (e.g. curves)."""


# ----------------------------------------------------------------------------------------------------
# Environment capture and atomic writes
# ----------------------------------------------------------------------------------------------------


def atomic_write_text(path: str | Path, text: str) -> None:
    """Writes a file so that a reader never sees half of it (write to a temp file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; results are for everyone to read
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def git_info(directory: Path) -> dict[str, Any]:
    """The commit of the checkout holding ``directory`` and whether ``directory`` differs from it.

    ``dirty`` counts modified and untracked (not ignored) files under ``directory``, so results produced
    by code that was never committed say so. ``directory/results`` is left out: it holds what runs write
    (plots, other tables), not code.
    """

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=directory, capture_output=True, text=True, check=True, timeout=30
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--", ".", ":(exclude)results"))
    except (subprocess.SubprocessError, FileNotFoundError, NotADirectoryError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": dirty}


def provenance(paper: Paper) -> dict[str, Any]:
    """Where the code that runs came from: the git state of the package's own source checkout, or
    ``{"installed": "<dist> <version>"}`` when it runs from an installed wheel (the git state of the folder
    the results land in says nothing about that code)."""
    source = paper.source_root()
    if source is None:
        return {"installed": f"{paper.distribution} {paper.version}"}
    return git_info(source)


def package_versions(extra: Sequence[str] = ()) -> dict[str, str]:
    import importlib.metadata

    names = {"paperzoo-shared", "torch", "numpy", "transformers", "lightning", *extra}
    versions = {"python": platform.python_version()}
    for name in sorted(names):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def cpu_time() -> float:
    """User + system CPU seconds of this process and its finished children (workers, subprocesses).

    On a shared machine wall time says little about what a run costs on quiet cores; CPU time does.
    """
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def machine_info() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": None,
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


# ----------------------------------------------------------------------------------------------------
# Results JSON and markdown
# ----------------------------------------------------------------------------------------------------


def summarize_row(row: RowResult) -> dict[str, dict[str, Any]]:
    summary = {}
    for name, per_seed in row.metrics.items():
        values = [per_seed[s] for s in sorted(per_seed)]
        mean, std = mean_std(values)
        summary[name] = {
            "per_seed": {str(s): per_seed[s] for s in sorted(per_seed)},
            "mean": mean,
            "std": std,
            "n": len(values),
        }
    return summary


def build_results(
    request: ReproRequest,
    result: TableResult,
    *,
    wall_time_s: float,
    command: str,
    started_at: str,
    cpu_time_s: float | None = None,
    git: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The results JSON (see the module docstring of :mod:`paperzoo_shared.repro`). ``git`` is the state of
    the checkout when the run started (read now when not given)."""
    table = request.table
    rows = []
    for row in result.rows:
        paper_values: dict[str, float] = {}
        paper_label = None
        if row.paper_row is not None:
            paper_row = table.row(row.paper_row)
            paper_values = dict(paper_row.paper)
            paper_label = paper_row.label
        rows.append(
            {
                "id": row.id,
                "label": row.label,
                "paper_row": row.paper_row,
                "paper_row_label": paper_label,
                "paper": paper_values,
                "metrics": summarize_row(row),
                "note": row.note,
            }
        )
    config = to_dict(result.config) if result.config is not None else None
    restored = request.ledger.restored() if request.ledger is not None else []
    return {
        "schema_version": RESULTS_SCHEMA_VERSION,
        "paper": request.paper.name,
        "paper_title": request.paper.title,
        "table": table.id,
        "table_title": table.title,
        "table_source": table.source,
        "preset": request.preset,
        "seeds": list(request.seeds),
        "overrides": list(request.overrides),
        "command": command,
        "started_at": started_at,
        "wall_time_s": round(wall_time_s, 2),
        "cpu_time_s": None if cpu_time_s is None else round(cpu_time_s, 2),
        "config_hash": config_hash(config) if config is not None else None,
        "config": config,
        "git": git if git is not None else provenance(request.paper),
        "restored_from_ledger": restored,
        "versions": package_versions([request.paper.distribution]),
        "machine": machine_info(),
        "metrics": [dataclasses.asdict(m) for m in table.metrics],
        "rows": rows,
        "notes": list(result.notes),
        "extra": result.extra,
    }


def _format_value(value: float, digits: int) -> str:
    if math.isinf(value):
        return "inf"
    if math.isnan(value):
        return "nan"
    return f"{value:.{digits}f}"


def render_markdown(results: Mapping[str, Any], *, heading_level: int = 3) -> str:
    """The table of one results JSON: our mean ± std beside the paper's value, naming the preset."""
    metrics = results["metrics"]
    preset = results["preset"]
    hashes = "#" * heading_level
    lines = [
        f"{hashes} {results['paper']}: {results['table_title']} ({results['table_source'] or results['table']})",
        "",
    ]
    # A "(paper)" column only for metrics the paper reports for some row, a "Paper row" column only when
    # some row points at one: a table of our own diagnostics is not padded with empty paper columns.
    with_paper = {m["id"] for m in metrics if any(m["id"] in row["paper"] for row in results["rows"])}
    show_paper_row = any(row["paper_row"] for row in results["rows"])
    if preset == "full":
        lines.append("Preset `full`: the paper's configuration.")
    elif with_paper:
        lines.append(
            f"Preset `{preset}`: a miniature on stand-in data. The paper's numbers stand beside it for reference; "
            "they come from the full setting and are not comparable in magnitude."
        )
    else:
        lines.append(
            f"Preset `{preset}`: a miniature on stand-in data; the paper reports no numbers for these rows."
        )
    lines.append("")
    header = ["Row"]
    for metric in metrics:
        header.append(f"{metric['label']} (ours)" if metric["id"] in with_paper else metric["label"])
        if metric["id"] in with_paper:
            header.append(f"{metric['label']} (paper)")
    if show_paper_row:
        header.append("Paper row")
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
    for row in results["rows"]:
        cells = [row["label"]]
        for metric in metrics:
            ours = row["metrics"].get(metric["id"])
            digits = metric.get("digits", 2)
            if ours is None:
                cells.append("—")
            elif ours["n"] > 1:
                cells.append(f"{_format_value(ours['mean'], digits)} ± {_format_value(ours['std'], digits)}")
            else:
                cells.append(_format_value(ours["mean"], digits))
            if metric["id"] in with_paper:
                paper_value = row["paper"].get(metric["id"])
                cells.append("—" if paper_value is None else _format_value(paper_value, digits))
        if show_paper_row:
            cells.append(row["paper_row_label"] or "—")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    row_notes = [f"- {row['label']}: {row['note']}" for row in results["rows"] if row.get("note")]
    if row_notes:
        lines += [*row_notes, ""]
    seeds = results["seeds"]
    git = results["git"]
    if "installed" in git:
        commit = f"installed {git['installed']}"
    else:
        commit = "commit " + (git.get("commit") or "unknown")[:12] + (" (dirty)" if git.get("dirty") else "")
    machine = results["machine"]
    hardware = machine.get("gpu") or f"{machine.get('cpu_count')} CPU cores"
    lines.append(
        f"Mean ± sample std over seeds {', '.join(map(str, seeds))} (n = {len(seeds)}). "
        f"Command: `{results['command']}`; {commit}; {hardware}; wall time {results['wall_time_s']:.0f} s"
        + (f" ({results['cpu_time_s']:.0f} s of CPU time)." if results.get("cpu_time_s") is not None else ".")
    )
    earlier = [r for r in results.get("restored_from_ledger", []) if r.get("commit") != git.get("commit")]
    if earlier:
        pairs = ", ".join(
            f"{r['row']} seed {r['seed']} ({(r.get('commit') or 'unknown')[:12]})" for r in earlier
        )
        lines += ["", f"Restored from the ledger, computed by an earlier commit: {pairs}."]
    for note in results.get("notes", []):
        lines += ["", note]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------------
# Running a table
# ----------------------------------------------------------------------------------------------------


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as error:
        raise ValueError(f"--seeds must be comma-separated integers such as 0,1,2; got {text!r}") from error
    if not seeds:
        raise ValueError("--seeds needs at least one seed")
    check_unique_seeds(seeds)
    return seeds


def check_unique_seeds(seeds: Sequence[int]) -> None:
    repeated = sorted({seed for seed in seeds if list(seeds).count(seed) > 1})
    if repeated:
        raise ValueError(f"seeds must be distinct; repeated: {', '.join(map(str, repeated))}")


def prepare_out_dir(out: Path) -> Path:
    """Create the output folder, or say in one line why it cannot be used (before any work starts)."""
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"output folder {out} exists and is not a folder; choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise PermissionError(
            f"cannot create output folder {out}: {error.strerror}; choose another --out"
        ) from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise PermissionError(f"output folder {out} is not writable; choose another --out")
    return out


def run_reproduction(
    paper: Paper,
    *,
    preset: str,
    table_id: str | None = None,
    seeds: Sequence[int] | None = None,
    out_dir: str | Path | None = None,
    overrides: Sequence[str] = (),
    command: str | None = None,
    fresh: bool = False,
) -> list[tuple[Path, str]]:
    """Runs one table (or every table that supports ``preset``) and writes the results.

    A rerun resumes from the ledger (``<table>.partial.jsonl``) unless ``fresh``. Returns, per table, the
    path of the results JSON and its markdown.
    """
    check_preset(preset)
    tables_file = load_tables(paper.data_root() / "paper" / "tables.yaml")
    if table_id is not None:
        tables = [tables_file.table(table_id)]
        if preset not in tables[0].presets:
            raise RegistryError(
                f"table {table_id} of {paper.name} has no preset {preset!r}; valid presets: {', '.join(tables[0].presets)}"
            )
    else:
        tables = [t for t in tables_file.tables if preset in t.presets]
        if not tables:
            raise RegistryError(f"no table of {paper.name} runs at preset {preset!r}")
    if seeds is not None:
        check_unique_seeds(seeds)
    out = prepare_out_dir(Path(out_dir) if out_dir is not None else paper.default_results_dir(preset))
    command = command or shlex.join(["paperzoo", *sys.argv[1:]])
    reproduce = paper.load_reproduce()
    written = []
    for table in tables:
        git = provenance(paper)  # the code that runs: commits made meanwhile do not count
        request = ReproRequest(
            paper=paper,
            table=table,
            preset=preset,
            seeds=list(seeds) if seeds is not None else list(table.seeds.get(preset, DEFAULT_SEEDS[preset])),
            out_dir=out,
            config_dir=paper.data_root() / "configs",
            overrides=list(overrides),
            ledger=RunLedger(out / f"{table.id}.partial.jsonl", commit=git.get("commit"), fresh=fresh),
        )
        started_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        cpu_start = cpu_time()
        start = time.perf_counter()
        result = reproduce(request)
        # a resumed run costs what every invocation spent on its results, not only this one
        earlier_wall, earlier_cpu = request.ledger.restored_time()
        wall = time.perf_counter() - start + earlier_wall
        results = build_results(
            request,
            result,
            wall_time_s=wall,
            cpu_time_s=cpu_time() - cpu_start + earlier_cpu,
            command=command,
            started_at=started_at,
            git=git,
        )
        markdown = render_markdown(results)
        json_path = out / f"{table.id}.json"
        atomic_write_json(json_path, results)
        atomic_write_text(out / f"{table.id}.md", markdown)
        written.append((json_path, markdown))
    return written


# ----------------------------------------------------------------------------------------------------
# REPRODUCTION.md
# ----------------------------------------------------------------------------------------------------

REPORT_PRESETS = ("full", "mini-long", "mini")
README_BLOCK = re.compile(
    r"(<!-- paperzoo:results (?P<ref>[\w.-]+/[\w.-]+) -->\n)(?P<body>.*?)(<!-- /paperzoo:results -->)",
    re.DOTALL,
)


def _committed_results(source: Path) -> list[tuple[str, Path]]:
    return [
        (preset, json_path)
        for preset in REPORT_PRESETS
        for json_path in sorted((source / "results" / preset).glob("*.json"))
    ]


def render_report(papers: Mapping[str, Paper]) -> str:
    """REPRODUCTION.md: every committed results JSON (presets full, mini-long and mini) of every installed paper."""
    lines = [
        "# Reproduction status",
        "",
        "Generated by `paperzoo report` from the committed `packages/*/results/{full,mini-long,mini}/*.json`; do not edit by hand.",
        "Mini results are miniatures on stand-in data, labelled as such; the paper's numbers stand beside them for reference.",
        "",
    ]
    found_any = False
    for name, paper in papers.items():
        source = paper.source_root()
        if source is None:
            continue
        sections = [render_markdown(json.loads(path.read_text())) for _, path in _committed_results(source)]
        if sections:
            found_any = True
            lines += [f"## {name}: {paper.title}", "", *sections]
    if not found_any:
        lines.append("No committed results yet.")
    return "\n".join(lines).rstrip() + "\n"


def fill_readme_blocks(readme: str, results_dir: Path) -> str:
    """Fills each ``<!-- paperzoo:results mini/<table> -->`` ... ``<!-- /paperzoo:results -->`` block of a
    package README with the markdown of ``results/mini/<table>.json``, so README tables always come from
    the committed results."""

    def fill(match: re.Match[str]) -> str:
        json_path = results_dir / f"{match.group('ref')}.json"
        if not json_path.is_file():
            raise FileNotFoundError(
                f"README block names {match.group('ref')}, but {json_path} does not exist"
            )
        body = render_markdown(json.loads(json_path.read_text()), heading_level=4)
        return match.group(1) + body + match.group(4)

    return README_BLOCK.sub(fill, readme)


def generated_files(papers: Mapping[str, Paper], root: Path) -> dict[Path, str]:
    """Every file ``paperzoo report`` writes, with its content: REPRODUCTION.md at ``root``, and per paper
    in a source checkout each ``results/{full,mini-long,mini}/<table>.md`` and the results blocks of its README."""
    files = {root / "REPRODUCTION.md": render_report(papers)}
    for paper in papers.values():
        source = paper.source_root()
        if source is None:
            continue
        for _, json_path in _committed_results(source):
            files[json_path.with_suffix(".md")] = render_markdown(json.loads(json_path.read_text()))
        readme = source / "README.md"
        if readme.is_file():
            files[readme] = fill_readme_blocks(readme.read_text(), source / "results")
    return files
