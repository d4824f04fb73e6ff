"""Host figures from the kernel's files agree with psutil's (the agent no longer imports it)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import psutil  # type: ignore[import-untyped]  # the reference these figures must match

from edge_agent.ops.procstat import SelfProcess, Temperature, disk_usage, hwmon_temperatures


def test_cpu_and_memory_of_this_process_match_psutil() -> None:
    """CPU seconds within a few ms, resident set within 2 MB (they are read moments apart)."""
    mine, ref = SelfProcess(), psutil.Process()
    sum(i * i for i in range(300_000))  # some CPU time to see
    with mine.oneshot():
        cpu = mine.cpu_times()
        rss = mine.memory_info().rss
    theirs = ref.cpu_times()
    assert abs((cpu.user + cpu.system) - (theirs.user + theirs.system)) < 0.05
    assert cpu.user > 0
    assert abs(rss - ref.memory_info().rss) < 2 * 2**20


def test_disk_usage_matches_the_standard_library(tmp_path: Path) -> None:
    """Free is what a normal user may use (f_bavail), total the filesystem's size."""
    free, total = disk_usage(tmp_path)
    st = os.statvfs(tmp_path)
    assert free == st.f_bavail * st.f_frsize
    assert total == shutil.disk_usage(tmp_path).total


def test_hwmon_sensors_are_read_by_driver_name(tmp_path: Path) -> None:
    """Each hwmon device's temp*_input in degrees, labelled; unreadable entries are skipped."""
    cpu = tmp_path / "hwmon0"
    cpu.mkdir()
    (cpu / "name").write_text("cpu_thermal\n")
    (cpu / "temp1_input").write_text("45620\n")
    rtc = tmp_path / "hwmon1"
    rtc.mkdir()
    (rtc / "name").write_text("ds3231\n")
    (rtc / "temp1_input").write_text("25000\n")
    (rtc / "temp1_label").write_text("board\n")
    (rtc / "temp2_input").write_text("garbage\n")
    (tmp_path / "hwmon2").mkdir()  # no name: skipped
    assert hwmon_temperatures(tmp_path) == {
        "cpu_thermal": [Temperature("", 45.62)],
        "ds3231": [Temperature("board", 25.0)],
    }
    assert hwmon_temperatures(tmp_path / "absent") == {}
