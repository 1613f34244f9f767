"""IMacHSR under DistributedDataParallel: gloo backend, two CPU processes."""

import json

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

import imachsr


def train_rank(rank: int, world_size: int, init_file: str, result_file: str) -> None:
    from test_scheme import (
        TinySegmenter,  # spawned processes import the test helpers afresh
    )

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        torch.manual_seed(0)  # same initial weights on every rank
        scheme = imachsr.IMacHSR(TinySegmenter(), 3, example_inputs=(2, 3, 16, 16), taps=["stem", "down"])
        initial = torch.cat([p.detach().flatten().clone() for p in scheme.parameters()])
        ddp = DistributedDataParallel(scheme)
        optimizer = torch.optim.Adam(ddp.parameters(), lr=1e-2)
        generator = torch.Generator().manual_seed(100 + rank)  # different data per rank
        for _ in range(3):
            x = torch.randn(2, 3, 16, 16, generator=generator)
            y = torch.randint(0, 3, (2, 16, 16), generator=generator)
            optimizer.zero_grad()
            ddp(x, y).loss.backward()
            optimizer.step()
        weights = torch.cat([p.detach().flatten() for p in scheme.parameters()])
        gathered = [torch.zeros_like(weights) for _ in range(world_size)]
        dist.all_gather(gathered, weights)
        if rank == 0:
            with open(result_file, "w") as handle:
                json.dump({
                    "identical": all(torch.equal(gathered[0], g) for g in gathered[1:]),
                    "changed": not torch.equal(initial, weights),
                }, handle)
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks_hold_identical_weights_after_training(tmp_path):
    result = tmp_path / "result.json"
    mp.spawn(train_rank, args=(2, str(tmp_path / "init"), str(result)), nprocs=2, join=True)
    outcome = json.loads(result.read_text())
    assert outcome == {"identical": True, "changed": True}
