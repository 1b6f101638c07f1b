"""FLOPs of a step and the peak FLOP/s that MFU divides by (used by bench_step.py).

``FlopCounterMode`` counts matmuls, convolutions and the CUDA attention kernels; the CPU flash
attention kernel is added here. MFU divides achieved FLOP/s by NVIDIA's datasheet dense bf16 peak
on a GPU and by a large matmul timed in the same process on a CPU (no trustworthy datasheet).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

# Dense bf16 (= fp16) tensor-core peaks from NVIDIA's datasheets, FLOP/s; first match wins.
PEAK_BF16_DENSE = {"H200": 989e12, "H100 NVL": 835e12, "H100 PCIe": 756e12, "H100": 989e12, "A100": 312e12}


def _cpu_sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_sdpa_backward_flops(grad_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_shape, query_shape, key_shape, value_shape)


# FlopCounterMode knows the CUDA attention kernels but not the CPU flash kernel.
CPU_ATTENTION_FLOPS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_sdpa_backward_flops,
}


def count_flops(run: Callable[[], None]) -> int:
    """FLOPs of ``run()`` (matmuls, convolutions, attention; forward and backward)."""
    with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS) as counter:
        run()
    return counter.get_total_flops()


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gemm_probe(device: torch.device, smoke: bool) -> dict[str, Any]:
    """FLOP/s of a large square matmul timed here (fp32 on CPU, bf16 on GPU), median of runs."""
    n = (512 if smoke else 2048) if device.type == "cpu" else 8192
    dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
    a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
    times = []
    for index in range(8 if device.type == "cpu" else 30):
        synchronize(device)
        start = time.perf_counter()
        a @ b
        synchronize(device)
        if index >= 2:  # warm-up
            times.append(time.perf_counter() - start)
    return {
        "n": n,
        "dtype": str(dtype).removeprefix("torch."),
        "flops_per_second": 2 * n**3 / sorted(times)[len(times) // 2],
    }


def peak_flops(device: torch.device, probe: dict[str, Any]) -> dict[str, Any]:
    """The MFU denominator: datasheet bf16 dense peak on GPU, the GEMM probe on CPU."""
    if device.type == "cpu":
        source = f"gemm probe (fp32 {probe['n']}x{probe['n']} matmul timed in this process)"
        return {"source": source, "flops_per_second": probe["flops_per_second"]}
    name = torch.cuda.get_device_name(device)
    for key, value in PEAK_BF16_DENSE.items():
        if key in name:
            return {"source": f"datasheet bf16 dense peak ({key})", "flops_per_second": value}
    return {"source": f"unknown GPU {name!r}: no datasheet peak", "flops_per_second": None}
