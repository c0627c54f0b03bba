"""Device conditions read from a directory laid out like a Jetson's /proc, /sys and /etc (and an x86 server's)."""

from __future__ import annotations

from pathlib import Path

from edgedeploy import device

NVPMODEL_CONF = """< POWER_MODEL ID=0 NAME=15W >
CPU_ONLINE CORE_0 1
< POWER_MODEL ID=1 NAME=25W >
< POWER_MODEL ID=2 NAME=MAXN_SUPER >
< POWER_MODEL ID=3 NAME=7W >
< PM_CONFIG DEFAULT=2 >
"""

DPKG_STATUS = """Package: nvidia-l4t-core
Status: install ok installed
Version: 36.4.3-20250107174145

Package: nvidia-jetpack
Status: install ok installed
Architecture: arm64
Version: 6.2+b77

Package: zlib1g
Status: install ok installed
Version: 1:1.2.11
"""


def write(root: Path, rel: str, text: str | bytes) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())


def jetson_tree(root: Path, *, locked: bool, emc: bool = True, status: str | None = "pmode:0001 fmode:quiet") -> Path:
    """An Orin Nano Super as L4T 36.4.3 lays it out: 6 cores, GPU devfreq, BPMP debugfs, thermal zones."""
    write(root, "proc/device-tree/model", b"NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super\0")
    write(root, "etc/nv_tegra_release", "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: "
                                        "aarch64, DATE: Wed Jan  8 01:49:37 UTC 2025\n# KERNEL_VARIANT: oot\n")
    write(root, "var/lib/dpkg/status", DPKG_STATUS)
    write(root, "etc/nvpmodel.conf", NVPMODEL_CONF)
    if status is not None:
        write(root, "var/lib/nvpmodel/status", status + "\n")
    write(root, "proc/cpuinfo", "".join(f"processor\t: {i}\nBogoMIPS\t: 62.50\nCPU part\t: 0xd42\n\n" for i in range(6)))
    write(root, "proc/loadavg", "1.50 1.20 0.90 2/345 6789\n")
    for i in range(6):
        base = f"sys/devices/system/cpu/cpu{i}/cpufreq"
        write(root, f"{base}/scaling_governor", "schedutil\n")
        write(root, f"{base}/scaling_cur_freq", "1728000\n")
        write(root, f"{base}/scaling_min_freq", "1728000\n" if locked else "729600\n")
        write(root, f"{base}/scaling_max_freq", "1728000\n")
    gpu = "sys/class/devfreq/17000000.gpu"
    write(root, f"{gpu}/cur_freq", "1020000000\n")
    write(root, f"{gpu}/min_freq", "1020000000\n" if locked else "306000000\n")
    write(root, f"{gpu}/max_freq", "1020000000\n")
    write(root, "sys/class/devfreq/15340000.vic/cur_freq", "115200000\n")  # another devfreq node, not the GPU
    if emc:
        write(root, "sys/kernel/debug/bpmp/debug/clk/emc/rate", "3199000000\n")
        write(root, "sys/kernel/debug/bpmp/debug/clk/emc/max_rate", "3199000000\n")
        write(root, "sys/kernel/debug/bpmp/debug/clk/emc/mrq_rate_locked", "1\n" if locked else "0\n")
    for i, (name, temp) in enumerate([("cpu-thermal", "48531"), ("gpu-thermal", "46218"), ("tj-thermal", "49062"),
                                      ("soc0-thermal", "-256000")]):
        write(root, f"sys/class/thermal/thermal_zone{i}/type", name + "\n")
        write(root, f"sys/class/thermal/thermal_zone{i}/temp", temp + "\n")
    return root


def test_jetson_with_clocks_locked(tmp_path):
    c = device.read_conditions(jetson_tree(tmp_path, locked=True))
    assert c["model"] == "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super"
    j = c["jetson"]
    assert j["l4t"] == "36.4.3" and j["jetpack"] == "6.2+b77"
    assert j["nvpmodel"] == {"id": 1, "name": "25W", "source": "/var/lib/nvpmodel/status"}
    assert j["gpu_mhz"] == {"node": "17000000.gpu", "cur": 1020.0, "min": 1020.0, "max": 1020.0}
    assert j["emc_mhz"] == {"cur": 3199.0, "max": 3199.0, "locked": True}
    assert j["jetson_clocks"] is True
    assert c["cpu"] == {"cores": 6, "governors": ["schedutil"], "mhz": 1728.0, "max_mhz": 1728.0, "min_is_max": True,
                        "load_1m": 1.5, "load_1m_per_core": 0.25}
    assert c["temperatures_c"] == {"cpu-thermal": 48.5, "gpu-thermal": 46.2, "tj-thermal": 49.1}  # -256 °C: off
    assert "unreadable" not in c
    assert device.summary(c) == ("NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super, nvpmodel 25W, "
                                 "jetson_clocks on, max 49 °C, load 0.25/core")


def test_jetson_unlocked_without_debugfs_or_status(tmp_path):
    """Without root the EMC clock is unreadable (named), CPU and GPU clocks alone say jetson_clocks is off, and a
    device that never ran nvpmodel is in the configured default mode."""
    c = device.read_conditions(jetson_tree(tmp_path, locked=False, emc=False, status=None))
    j = c["jetson"]
    assert j["jetson_clocks"] is False
    assert "emc_mhz" not in j and "EMC clock" in c["unreadable"][0]
    assert j["nvpmodel"] == {"id": 2, "name": "MAXN_SUPER", "source": "/etc/nvpmodel.conf default"}
    assert j["gpu_mhz"]["min"] == 306.0


def test_one_unlocked_clock_means_jetson_clocks_is_off(tmp_path):
    root = jetson_tree(tmp_path, locked=True)
    write(root, "sys/kernel/debug/bpmp/debug/clk/emc/mrq_rate_locked", "0\n")
    assert device.read_conditions(root)["jetson"]["jetson_clocks"] is False


def test_l4t_without_jetpack_meta_package(tmp_path):
    root = jetson_tree(tmp_path, locked=True)
    write(root, "var/lib/dpkg/status", DPKG_STATUS.split("\n\nPackage: nvidia-jetpack")[0] + "\n")
    j = device.read_conditions(root)["jetson"]
    assert j["l4t"] == "36.4.3" and j["jetpack"] is None


def test_x86_server(tmp_path):
    write(tmp_path, "proc/cpuinfo", "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Gold 6430\ncpu MHz\t: 2100.0\n\n"
                                    "processor\t: 1\nmodel name\t: Intel(R) Xeon(R) Gold 6430\n\n")
    write(tmp_path, "proc/loadavg", "3.00 2.00 1.00 1/200 300\n")
    write(tmp_path, "sys/devices/system/cpu/cpu0/cpufreq/scaling_governor", "performance\n")
    write(tmp_path, "sys/devices/system/cpu/cpu1/cpufreq/scaling_governor", "powersave\n")
    c = device.read_conditions(tmp_path)
    assert c == {"model": "Intel(R) Xeon(R) Gold 6430",
                 "cpu": {"model": "Intel(R) Xeon(R) Gold 6430", "cores": 2, "governors": ["performance", "powersave"],
                         "load_1m": 3.0, "load_1m_per_core": 1.5}}
    assert device.summary(c) == "Intel(R) Xeon(R) Gold 6430, governor performance/powersave, load 1.50/core"


def test_empty_root_reads_nothing_and_raises_nothing(tmp_path):
    assert device.read_conditions(tmp_path) == {"model": None, "cpu": {}}


def test_report_sections(tmp_path):
    """report.md and report.html show the device section from a report's `device`."""
    from edgedeploy.validate import html
    from edgedeploy.validate.report import render_markdown

    c = device.read_conditions(jetson_tree(tmp_path, locked=True))
    report = minimal_report(c)
    md = render_markdown(report)
    assert "## Device" in md
    assert "| nvpmodel | 25W (id 1, from /var/lib/nvpmodel/status) |" in md
    assert "| jetson_clocks | on (clocks pinned at their maximum) |" in md
    assert "| GPU clock | 1020.0 MHz (min 1020.0, max 1020.0) |" in md
    page = html.render_html(report)
    assert "id='device'>Device</h2>" in page and "MAXN" not in page and "25W (id 1" in page
    assert "## Device" not in render_markdown(minimal_report(None))


def minimal_report(conditions):
    from report_helpers import report_of

    return report_of({"kind": "validate", "name": "m", "target": "trt", "precision": "fp16",
                      "artifact": {"path": "trt/model.plan"}, "validation_data": "reference.npz",
                      "conditions": {"backend": "tensorrt"}, "device": conditions or None})
