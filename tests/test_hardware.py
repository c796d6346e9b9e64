"""The hardware rule: which number format and which preset settings each kind of device gets.

The facts of a machine are given as parameters (``describe_cpu``, ``describe_cuda``), so every
kind of device is tested here on whatever machine runs the suite.
"""

from __future__ import annotations

import json
import warnings

import pytest

from digits.errors import DigitsWarning
from digits.hardware import (
    Hardware,
    choose_precision,
    cpu_isa,
    describe_cpu,
    describe_cuda,
    emulation_warning,
)
from digits.presets import list_presets, load_preset
from digits.train.device import resolve_config

ZEN3 = {"fpu", "sse4_2", "avx", "avx2", "fma", "f16c", "bmi2"}
SAPPHIRE_RAPIDS = ZEN3 | {"avx512f", "avx512bw", "avx512_bf16", "amx_bf16", "amx_tile", "amx_int8"}
ZEN4 = ZEN3 | {"avx512f", "avx512bw", "avx512_bf16"}
SKYLAKE_X = ZEN3 | {"avx512f", "avx512bw"}

AVX2_CPU = describe_cpu("AMD EPYC 7B13", ZEN3, 2)
AMX_CPU = describe_cpu("Intel Xeon Platinum 8481C", SAPPHIRE_RAPIDS, 2)
T4, V100, P100, GTX1080 = (describe_cuda("Tesla T4", (7, 5)), describe_cuda("Tesla V100", (7, 0)),
                           describe_cuda("Tesla P100", (6, 0)), describe_cuda("GeForce GTX 1080", (6, 1)))
A100, H100 = describe_cuda("A100", (8, 0)), describe_cuda("H100", (9, 0))
MPS = Hardware("mps", "arm64", "metal", 8, native_bf16=False)


@pytest.mark.parametrize("flags, machine, isa", [
    (SAPPHIRE_RAPIDS, "x86_64", "amx"), (ZEN4, "x86_64", "avx512-bf16"), (SKYLAKE_X, "x86_64", "avx512"),
    (ZEN3, "x86_64", "avx2"), ({"sse4_2"}, "x86_64", "baseline"),
    ({"fp", "asimd", "sve", "bf16"}, "aarch64", "sve"), ({"fp", "asimd"}, "aarch64", "neon"),
])
def test_the_isa_level_is_read_from_the_cpu_flags(flags, machine, isa):
    assert cpu_isa(flags, machine) == isa


@pytest.mark.parametrize("hw, auto", [
    (AMX_CPU, "bf16"), (describe_cpu("EPYC 9654", ZEN4, 2), "bf16"),       # native bf16 CPUs
    (AVX2_CPU, "fp32"), (describe_cpu("Xeon Gold 6148", SKYLAKE_X, 2), "fp32"),  # bf16 emulated
    (describe_cpu("Graviton3", {"asimd", "sve", "bf16"}, 2, "aarch64"), "bf16"),
    (describe_cpu("Graviton2", {"asimd"}, 2, "aarch64"), "fp32"),
    (A100, "bf16"), (H100, "bf16"),                                      # Ampere and later
    (T4, "fp16"), (V100, "fp16"), (P100, "fp16"),                         # fast fp16, no bf16
    (GTX1080, "fp32"),                                                   # fp16 at 1/64 rate
    (MPS, "fp32"),
])
def test_auto_chooses_the_fastest_format_each_device_computes_natively(hw, auto):
    assert choose_precision("auto", hw) == auto
    assert choose_precision("fp32", hw) == "fp32" and choose_precision("bf16", hw) == "bf16"


def test_plain_mlps_stay_in_fp32_on_a_cpu_even_with_amx():
    # Their steps are overhead, not arithmetic: the fused fp32 engine trains them.
    assert choose_precision("auto", AMX_CPU, overhead_bound=True) == "fp32"
    assert choose_precision("auto", H100, overhead_bound=True) == "bf16"


def test_holding_onednn_to_avx2_makes_an_amx_cpu_an_avx2_one():
    held = describe_cpu("Xeon", SAPPHIRE_RAPIDS, 2, env={"ONEDNN_MAX_CPU_ISA": "AVX2",
                                                          "ATEN_CPU_CAPABILITY": "avx2"})
    assert (held.isa, held.native_bf16, held.limited_by) == ("avx2", False, "ONEDNN_MAX_CPU_ISA=AVX2")
    assert choose_precision("auto", held) == "fp32" and "held by ONEDNN_MAX_CPU_ISA=AVX2" in held.describe()
    # A limit above what the CPU has changes nothing.
    assert describe_cpu("EPYC", ZEN3, 2, env={"ONEDNN_MAX_CPU_ISA": "ALL"}).isa == "avx2"


@pytest.mark.parametrize("requested, hw", [("bf16", AVX2_CPU), ("bf16", T4), ("fp16", AVX2_CPU),
                                           ("fp16", GTX1080)])
def test_asking_for_a_format_the_device_emulates_warns_and_says_what_to_use(requested, hw):
    message = emulation_warning(requested, hw)
    assert message and "--precision auto" in message and "\n" not in message


@pytest.mark.parametrize("requested, hw", [("bf16", AMX_CPU), ("bf16", H100), ("fp16", T4), ("fp32", AVX2_CPU),
                                           ("auto", AVX2_CPU)])
def test_native_or_automatic_formats_do_not_warn(requested, hw):
    assert emulation_warning(requested, hw) is None


@pytest.mark.parametrize("name", list_presets())
def test_every_shipped_preset_trains_in_fp32_on_an_avx2_cpu(name):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DigitsWarning)  # and without a warning
        assert load_preset(name).config_for(AVX2_CPU).precision == "fp32"


@pytest.mark.parametrize("name", [n for n in list_presets() if n != "kaggle-record"])
def test_every_shipped_preset_asks_for_auto_and_gets_bf16_on_amx_where_it_is_not_a_plain_mlp(name):
    preset = load_preset(name)
    assert preset.config.precision == "auto"
    expected = "fp32" if preset.config.model == "tutorial-mlp" else "bf16"
    assert preset.config_for(AMX_CPU).precision == expected


def test_a_preset_states_settings_per_class_of_hardware(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text('[train]\nmodel = "fast-cnn"\nbatch_size = 256\n\n'
                    '[cpu]\nchannels_last = true\n\n'
                    '[cpu.emulated-bf16]\nchannels_last = false\nbatch_size = 512\n\n'
                    '[cuda.native-bf16]\nprecision = "fp32"\n')
    preset = load_preset(path)
    on_amx, on_avx2 = preset.config_for(AMX_CPU), preset.config_for(AVX2_CPU)
    assert (on_amx.precision, on_amx.channels_last, on_amx.batch_size) == ("bf16", True, 256)
    assert (on_avx2.precision, on_avx2.channels_last, on_avx2.batch_size) == ("fp32", False, 512)
    assert preset.config_for(H100).precision == "fp32" and preset.config_for(T4).precision == "fp16"


def test_an_explicit_bf16_on_an_avx2_cpu_is_kept_with_one_warning():
    with pytest.warns(DigitsWarning, match="emulated") as caught:
        config = resolve_config(load_preset("fast").config.replace(precision="bf16"), AVX2_CPU)
    assert config.precision == "bf16" and len(caught) == 1


def test_the_cli_prints_the_emulation_warning_as_one_line(tmp_path, kaggle_dir, cli, monkeypatch):
    from digits.hardware import hardware

    if hardware("cpu").native_bf16:
        pytest.skip("this CPU computes bf16 natively: nothing to warn about")
    result = cli("train", "--model", "softmax", "--data", kaggle_dir, "--epochs", "1", "--precision", "bf16",
                 "--device", "cpu", "--out", tmp_path / "run", "--no-report", "--json")
    assert result.code == 0 and json.loads(result.out)["command"] == "train"  # stdout stays one JSON object
    warned = [line for line in result.err.splitlines() if "warning" in line]
    assert len(warned) == 1 and warned[0].startswith("digits: warning: bf16 is emulated on this CPU")


def test_a_run_records_the_hardware_and_the_format_it_resolved_to(tmp_path, kaggle_dir, cli):
    from digits.hardware import hardware

    run = tmp_path / "run"
    assert cli("train", "--preset", "fast", "--data", kaggle_dir, "--device", "cpu", "--out", run,
               "--no-report", "--quiet").code == 0
    config = json.loads((run / "config.json").read_text())
    here = hardware("cpu")
    assert config["environment"]["hardware"]["isa"] == here.isa
    assert config["train"]["precision"] == ("bf16" if here.native_bf16 else "fp32")
