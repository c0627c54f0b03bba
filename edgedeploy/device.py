"""The conditions a latency figure was measured under, read from the files Linux and L4T expose: which device, which
power mode, whether clocks were locked, how hot it was, how loaded.

Every reader takes the root directory the files are under (`/` on the device), so the same code reads a directory
laid out like a Jetson's /proc, /sys and /etc in the tests. Nothing here runs a tool (no `nvpmodel -q`, no
`jetson_clocks --show`): reading files needs no root and cannot change the device. What is not there or not readable
is left out, and `unreadable` names what was looked for and not found where that matters (the EMC clock is in
debugfs, readable only by root).

Jetson sources:
    /proc/device-tree/model               board name (NUL-terminated)
    /etc/nv_tegra_release                 L4T release: "# R36 (release), REVISION: 4.3, ..."
    /var/lib/dpkg/status                  JetPack: the installed `nvidia-jetpack` package's version
    /var/lib/nvpmodel/status              the active power mode as "pmode:0002"; names in /etc/nvpmodel.conf
    /sys/class/devfreq/*gpu*|*ga10b*|...  GPU clock (cur/min/max); min == max once jetson_clocks ran
    /sys/kernel/debug/bpmp/debug/clk/emc  memory clock (rate, max_rate, mrq_rate_locked); root only
    /sys/class/thermal/thermal_zone*      temperatures (type, temp in m°C)
Everywhere: /proc/cpuinfo (CPU model), cpufreq governors and clocks, /proc/loadavg.
"""

from __future__ import annotations

import platform
import re
from pathlib import Path
from typing import Any

_GPU_DEVFREQ = re.compile(r"gpu|ga10b|gv11b|gp10b|gb10b|gm20b", re.IGNORECASE)


class _Files:
    """Reads text files under a root directory; a missing or unreadable file is None."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, rel: str) -> Path:
        return self.root / rel.lstrip("/")

    def text(self, rel: str | Path) -> str | None:
        path = rel if isinstance(rel, Path) else self.path(rel)
        try:
            return path.read_bytes().decode("utf-8", "replace").strip().rstrip("\0").strip()
        except OSError:
            return None

    def number(self, rel: str | Path) -> float | None:
        value = self.text(rel)
        try:
            return float(value.split()[0]) if value else None
        except ValueError:
            return None

    def glob(self, rel: str) -> list[Path]:
        return sorted(self.root.glob(rel.lstrip("/")))


def read_conditions(root: str | Path = "/") -> dict[str, Any]:
    """Everything readable about the device right now; a Jetson gets its `jetson` section."""
    files = _Files(root)
    unreadable: list[str] = []
    board = files.text("/proc/device-tree/model")
    cpu = cpu_conditions(files)
    out: dict[str, Any] = {"model": board or cpu.get("model"), "cpu": cpu}
    if board is not None and (files.path("/etc/nv_tegra_release").is_file() or "jetson" in board.lower()):
        out["jetson"] = jetson_conditions(files, cpu, unreadable)
    temps = temperatures(files)
    if temps:
        out["temperatures_c"] = temps
    if unreadable:
        out["unreadable"] = unreadable
    return out


def cpu_name(root: str | Path = "/") -> str:
    """The CPU's model name as /proc/cpuinfo gives it (an Arm board's `Hardware` line), else what Python knows."""
    return _cpu_model(_Files(root).text("/proc/cpuinfo") or "") or platform.processor() or platform.machine()


def cpu_flags(root: str | Path = "/") -> set[str]:
    """The CPU's feature flags as /proc/cpuinfo lists them (x86: avx2, avx512_vnni, amx_bf16, ...); empty where it
    lists none (Arm) or cannot be read."""
    match = re.search(r"^flags\s*:\s*(.*)$", _Files(root).text("/proc/cpuinfo") or "", re.MULTILINE)
    return set(match.group(1).split()) if match else set()


def _cpu_model(cpuinfo: str) -> str | None:
    for key in ("model name", "Hardware", "cpu model"):
        match = re.search(rf"^{key}\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
        if match:
            return match.group(1).strip()
    return None


def cpu_conditions(files: _Files) -> dict[str, Any]:
    """CPU model, online cores, frequency governors, mean current clock and the load average per core."""
    out: dict[str, Any] = {}
    cpuinfo = files.text("/proc/cpuinfo") or ""
    model = _cpu_model(cpuinfo)
    if model:
        out["model"] = model
    policies = files.glob("/sys/devices/system/cpu/cpu[0-9]*/cpufreq")
    cores = len(re.findall(r"^processor\s*:", cpuinfo, re.MULTILINE)) or len(policies) or None
    if cores:
        out["cores"] = cores
    governors = sorted({g for p in policies if (g := files.text(p / "scaling_governor"))})
    if governors:
        out["governors"] = governors
    clocks = [(files.number(p / "scaling_cur_freq"), files.number(p / "scaling_min_freq"),
               files.number(p / "scaling_max_freq")) for p in policies]
    cur, top = [c for c, _, _ in clocks if c], [m for _, _, m in clocks if m]
    if cur:
        out["mhz"] = round(sum(cur) / len(cur) / 1000, 1)
    if top:
        out["max_mhz"] = round(max(top) / 1000, 1)
    if clocks and all(lo and hi for _, lo, hi in clocks):
        out["min_is_max"] = all(lo == hi for _, lo, hi in clocks)
    load = files.text("/proc/loadavg")
    if load:
        out["load_1m"] = float(load.split()[0])
        if cores:
            out["load_1m_per_core"] = round(out["load_1m"] / cores, 3)
    return out


def jetson_conditions(files: _Files, cpu: dict[str, Any], unreadable: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"l4t": l4t_release(files), "jetpack": jetpack_version(files),
                           "nvpmodel": power_mode(files)}
    gpu = gpu_clock(files)
    if gpu:
        out["gpu_mhz"] = gpu
    emc = emc_clock(files)
    if emc:
        out["emc_mhz"] = emc
    else:
        unreadable.append("EMC clock (/sys/kernel/debug/bpmp/debug/clk/emc: debugfs, root only)")
    out["jetson_clocks"] = clocks_locked(cpu, gpu, emc)
    return out


def l4t_release(files: _Files) -> str | None:
    """"36.4.3" from "# R36 (release), REVISION: 4.3, GCID: ...". """
    text = files.text("/etc/nv_tegra_release") or ""
    match = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    return f"{match.group(1)}.{match.group(2)}" if match else None


def jetpack_version(files: _Files) -> str | None:
    """The installed `nvidia-jetpack` package's version ("6.2+b77"), from dpkg's status file; None when JetPack's
    meta package is not installed (L4T alone)."""
    status = files.text("/var/lib/dpkg/status") or ""
    for stanza in status.split("\n\n"):
        fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.*)$", stanza, re.MULTILINE))
        if fields.get("Package") == "nvidia-jetpack" and "installed" in fields.get("Status", "").split():
            return fields.get("Version")
    return None


def power_mode(files: _Files) -> dict[str, Any] | None:
    """The active nvpmodel mode {id, name}: the id nvpmodel last set (/var/lib/nvpmodel/status), else the
    configured default, named from /etc/nvpmodel.conf."""
    conf = files.text("/etc/nvpmodel.conf") or ""
    names = {int(i): n for i, n in re.findall(r"<\s*POWER_MODEL\s+ID=(\d+)\s+NAME=([^\s>]+)", conf)}
    default = re.search(r"<\s*PM_CONFIG\s+DEFAULT=(\d+)", conf)
    status = re.search(r"pmode:(\d+)", files.text("/var/lib/nvpmodel/status") or "")
    if status:
        mode, source = int(status.group(1)), "/var/lib/nvpmodel/status"
    elif default:
        mode, source = int(default.group(1)), "/etc/nvpmodel.conf default"
    else:
        return None
    return {"id": mode, "name": names.get(mode), "source": source}


def gpu_clock(files: _Files) -> dict[str, float] | None:
    """The GPU's devfreq node: current, minimum and maximum clock in MHz."""
    for node in files.glob("/sys/class/devfreq/*"):
        if _GPU_DEVFREQ.search(node.name):
            values = {k: files.number(node / f"{k}_freq") for k in ("cur", "min", "max")}
            if values["cur"] is not None:
                return {"node": node.name, **{k: round(v / 1e6, 1) for k, v in values.items() if v is not None}}
    return None


def emc_clock(files: _Files) -> dict[str, Any] | None:
    """The memory (EMC) clock from BPMP's debugfs: current and maximum MHz, and whether its rate is locked."""
    base = "/sys/kernel/debug/bpmp/debug/clk/emc"
    rate = files.number(f"{base}/rate")
    if rate is None:
        return None
    out: dict[str, Any] = {"cur": round(rate / 1e6, 1)}
    top = files.number(f"{base}/max_rate")
    if top is not None:
        out["max"] = round(top / 1e6, 1)
    locked = files.number(f"{base}/mrq_rate_locked")
    if locked is not None:
        out["locked"] = bool(locked)
    return out


def clocks_locked(cpu: dict[str, Any], gpu: dict | None, emc: dict | None) -> bool | None:
    """Whether jetson_clocks is in effect, as far as readable: it pins every CPU's and the GPU's minimum clock to its
    maximum and locks the EMC rate. None when no clock could be read."""
    signs = [cpu.get("min_is_max"), None if not gpu or "min" not in gpu else gpu["min"] == gpu.get("max")]
    if emc and "locked" in emc:
        signs.append(emc["locked"])
    known = [s for s in signs if s is not None]
    return all(known) if known else None


def temperatures(files: _Files) -> dict[str, float]:
    """Every thermal zone's temperature in °C by its type (cpu-thermal, gpu-thermal, tj-thermal, ...)."""
    out = {}
    for zone in files.glob("/sys/class/thermal/thermal_zone*"):
        name, temp = files.text(zone / "type"), files.number(zone / "temp")
        if name and temp is not None and temp > -40000:  # disabled zones report -40 °C or less
            out[name] = round(temp / 1000, 1)
    return out


def summary(conditions: dict[str, Any] | None) -> str:
    """One line for tables: model, power mode, clocks, hottest zone."""
    if not conditions:
        return "—"
    parts = [str(conditions.get("model") or "unknown device")]
    jetson = conditions.get("jetson") or {}
    mode = jetson.get("nvpmodel")
    if mode:
        parts.append(f"nvpmodel {mode.get('name') or mode['id']}")
    if jetson.get("jetson_clocks") is not None:
        parts.append("jetson_clocks " + ("on" if jetson["jetson_clocks"] else "off"))
    elif (governors := conditions.get("cpu", {}).get("governors")):
        parts.append("governor " + "/".join(governors))
    temps = conditions.get("temperatures_c")
    if temps:
        parts.append(f"max {max(temps.values()):.0f} °C")
    load = conditions.get("cpu", {}).get("load_1m_per_core")
    if load is not None:
        parts.append(f"load {load:.2f}/core")
    return ", ".join(parts)


def rows(conditions: dict[str, Any]) -> list[tuple[str, str]]:
    """The conditions as (name, value) rows: the Device section of report.md and report.html."""
    out = [("model", str(conditions.get("model") or "—"))]
    jetson = conditions.get("jetson")
    if jetson:
        mode = jetson.get("nvpmodel") or {}
        out += [("L4T", jetson.get("l4t") or "—"), ("JetPack", jetson.get("jetpack") or "— (nvidia-jetpack not installed)"),
                ("nvpmodel", f"{mode.get('name')} (id {mode.get('id')}, from {mode.get('source')})" if mode else "—"),
                ("jetson_clocks", {True: "on (clocks pinned at their maximum)", False: "off",
                                   None: "unknown"}[jetson.get("jetson_clocks")])]
        for key, name in (("gpu_mhz", "GPU clock"), ("emc_mhz", "EMC clock")):
            clock = jetson.get(key)
            if clock:
                out.append((name, f"{clock.get('cur')} MHz (min {clock.get('min', '—')}, max {clock.get('max', '—')})"))
    cpu = conditions.get("cpu", {})
    if cpu:
        out.append(("CPU", ", ".join(p for p in (
            cpu.get("model"), f"{cpu['cores']} cores" if cpu.get("cores") else None,
            f"governor {'/'.join(cpu['governors'])}" if cpu.get("governors") else None,
            f"{cpu['mhz']} MHz (max {cpu.get('max_mhz')})" if cpu.get("mhz") else None,
            f"load {cpu['load_1m_per_core']:.2f} per core" if cpu.get("load_1m_per_core") is not None else None) if p)))
    temps = conditions.get("temperatures_c")
    if temps:
        out.append(("temperatures", ", ".join(f"{k} {v:.1f} °C" for k, v in temps.items())))
    if conditions.get("unreadable"):
        out.append(("not readable", "; ".join(conditions["unreadable"])))
    return out


__all__ = ["read_conditions", "summary", "rows"]
