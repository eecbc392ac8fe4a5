"""``edgestill devices list|show``: the device profiles (built-in, the user's own folders, and the detected host)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from edgestill.cli import app, echo_json, run_command

devices_app = typer.Typer(
    help="Device profiles: what each device computes with, its memory bandwidth and runtimes, every number sourced.",
    epilog=("\b\nExamples:\n"
            "  edgestill devices list\n"
            "  edgestill devices show raspberry-pi-5\n"
            "  edgestill devices show host --json             # what was detected on this machine\n"
            "  edgestill devices list --profiles ./my-profiles  # add a folder of your own profile files\n"
            "  edgestill devices calibrate host               # refit this machine's efficiencies\n\n"
            "Profiles are read from $EDGESTILL_PROFILES (folders separated by ':'), .edgestill/profiles, then the\n"
            "built-in ones; a file there with a built-in's id replaces it (and may 'extends:' it)."),
    no_args_is_help=True,
)
app.add_typer(devices_app, name="devices")

_PROFILES_HELP = "A folder of profile YAML files searched before the others (repeatable)."


def search_path(profiles: list[Path] | None) -> list[Path]:
    """``--profiles`` folders, then the default search path.

    Raises:
        InputError: a ``--profiles`` value that is not a folder.
    """
    from edgestill.devices.profiles import profile_search_path
    from edgestill.errors import InputError

    for folder in profiles or []:
        if not folder.is_dir():
            what = "does not exist" if not folder.exists() else "is not a folder"
            raise InputError(f"--profiles {folder} {what}; pass a folder that holds profile .yaml files.")
    return [*(profiles or []), *profile_search_path()]


@devices_app.command("list")
def list_devices(
    profiles: list[Path] = typer.Option(None, "--profiles", help=_PROFILES_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print the profiles' summaries as JSON."),
) -> None:
    """One line per profile: id, class, CPU, peak fp32 GMAC/s on all cores, bandwidth, runtimes, calibrated."""

    def body() -> None:
        from edgestill.devices.profiles import list_profiles

        folders = search_path(profiles)
        rows = [_summary(p) for p in list_profiles(folders)]
        if json_out:
            echo_json({"schema": "edgestill-device-profile-list", "search_path": [str(f) for f in folders],
                       "profiles": rows})
            return
        _print_table(rows)

    run_command(body)


@devices_app.command("show")
def show_device(
    device: str = typer.Argument(..., help="A profile id or alias (edgestill devices list), 'host', or a .yaml file."),
    profiles: list[Path] = typer.Option(None, "--profiles", help=_PROFILES_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print the whole profile as JSON."),
) -> None:
    """Everything a profile says, each number with its source, and the peaks derived from it."""

    def body() -> None:
        from edgestill.devices.profiles import load_profile

        p = load_profile(device, search_path=search_path(profiles))
        if json_out:
            echo_json({"profile": p.to_dict(), "path": None if p.path is None else str(p.path),
                       "calibration_path": None if p.calibration_path is None else str(p.calibration_path),
                       "calibrated": p.calibrated, "peak_gmacs_per_s": _peaks(p)})
            return
        typer.echo(_describe(p))

    run_command(body)


def _peaks(p: Any) -> dict[str, dict[str, float]]:
    """GMAC/s per precision at 1 thread and at every core (``"1"`` and ``"all"``)."""
    return {prec: {"1": round(p.peak_macs_per_s(prec, 1) / 1e9, 2),
                   "all": round(p.peak_macs_per_s(prec, p.cpu_cores) / 1e9, 2)} for prec in ("fp32", "fp16", "int8")}


def _summary(p: Any) -> dict[str, Any]:
    return {"id": p.id, "name": p.name, "class": p.device_class, "aliases": list(p.aliases), "cpu": p.cpu_summary,
            "cores": p.cpu_cores, "peak_gmacs_fp32_all_cores": round(p.peak_macs_per_s("fp32", p.cpu_cores) / 1e9, 2),
            "bandwidth_gbs": p.bandwidth_gbs, "runtimes": {k: list(v) for k, v in p.runtimes.items()},
            "calibrated": p.calibrated, "path": None if p.path is None else str(p.path)}


def _print_table(rows: list[dict[str, Any]]) -> None:
    import sys

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="Device profiles")
    for col in ("id", "name", "class", "CPU", "fp32 GMAC/s", "GB/s", "runtimes", "calibrated"):
        table.add_column(col, justify="right" if col in ("fp32 GMAC/s", "GB/s") else "left")
    for r in rows:
        runtimes = "; ".join(f"{k}: {', '.join(v)}" for k, v in r["runtimes"].items()) or "-"
        table.add_row(escape(r["id"]), escape(r["name"]), r["class"], escape(r["cpu"]),
                      f"{r['peak_gmacs_fp32_all_cores']:.1f}", f"{r['bandwidth_gbs']:g}", escape(runtimes),
                      "yes" if r["calibrated"] else "no")
    Console(width=None if sys.stdout.isatty() else 180).print(table)


def _describe(p: Any) -> str:
    """The profile as text: each block followed by its source."""
    lines = [f"{p.id}: {p.name} ({p.device_class})", f"  file: {p.path or 'detected from this machine'}"]
    if p.aliases:
        lines.append(f"  aliases: {', '.join(p.aliases)}")
    if p.extends:
        lines.append(f"  extends: {p.extends}")
    lines.append(f"  SoC: {p.soc}")
    lines.append("CPU")
    for c in p.clusters:
        macs = ", ".join(f"{k} {v:g}" for k, v in c.macs_per_cycle.items())
        lines.append(f"  {c.count}x {c.core} at {c.ghz:g} GHz; ISA {' '.join(c.isa) or '-'}; MACs/cycle/core {macs}")
        lines.append(f"    source: {c.source}")
    if p.caches:
        sizes = ", ".join(f"{k[:-3].upper()} {v:g} KB" for k, v in p.caches.items() if k.endswith("_kb"))
        lines += [f"  caches: {sizes}", f"    source: {p.caches.get('source')}"]
    peaks = _peaks(p)
    lines.append("  peak GMAC/s (1 thread / all {} cores): {}".format(
        p.cpu_cores, "; ".join(f"{k} {v['1']:g} / {v['all']:g}" for k, v in peaks.items())))
    lines += ["Memory", f"  {p.memory_gb:g} GB, {p.bandwidth_gbs:g} GB/s", f"    source: {p.sources['memory']}"]
    lines.append("Accelerators" + ("" if p.accelerators else ": none"))
    for a in p.accelerators:
        peak = ", ".join(f"{k} {v:g}" for k, v in (a.get("peak_gflops") or {}).items())
        lines.append(f"  {a['name']} ({a['kind']}): {a.get('model', '')}{f'; peak GFLOPS {peak}' if peak else ''}")
        lines.append(f"    source: {a['source']}")
    lines.append("Runtimes" + ("" if p.runtimes else ": none found"))
    for rt, accs in p.runtimes.items():
        lines.append(f"  {rt}: {', '.join(accs)}")
    if p.detected:
        d = p.detected
        lines += ["Detected", f"  {d.get('logical_cores')} logical / {d.get('physical_cores')} physical cores; "
                  f"governor {d.get('governor') or 'unreadable'}; flags {' '.join(d.get('flags') or []) or '-'}"]
    if not p.calibration:
        lines.append(f"Calibration: none (edgestill devices calibrate {p.id})")
    else:
        lines.append(f"Calibration ({p.calibration_path or 'in the profile'})")
        for e in p.calibration:
            eff = ", ".join(f"{k} {v:.2f}" for k, v in e["efficiency"].items())
            err = e.get("error") or {}
            err_text = (f"; error median {err['median_abs_percent']:g}%, {100 * err['within_25_percent']:.0f}% "
                        f"within 25% (n={err.get('n')})") if err.get("median_abs_percent") is not None \
                and err.get("within_25_percent") is not None else ""
            fixed = ", ".join(f"{label} {e[k]:g}" for k, label in (("bandwidth_efficiency", "bandwidth efficiency"),
                                                                   ("overhead_ms", "overhead ms"),
                                                                   ("per_node_ms", "per node ms")) if e.get(k) is not None)
            lines.append(f"  {e['runtime']} {e['precision']} {e['threads']} thr: efficiency {eff}"
                         f"{'; ' + fixed if fixed else ''}{err_text}")
    return "\n".join(lines)
