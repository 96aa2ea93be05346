"""frcnn-train under torchrun: gloo on the CPU, two processes on this machine (each test bounded by a timeout)."""
from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys

import pytest
import torch

from frcnn.data.loader import InfiniteGroupedBatchSampler
from frcnn.engine.distributed import DistEnv, env_from

from helpers import output_of, pythonpath, tiny_overrides


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(nproc: int, *args, cwd, timeout: int = 240, command: str = "train") -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
               f"--master_port={free_port()}", "-m", f"frcnn.cli.{command}", *map(str, args)]
    env = {"PYTHONPATH": pythonpath(), "HYDRA_FULL_ERROR": "0", "PYTHONWARNINGS": "ignore"}
    return subprocess.run(command, cwd=cwd, env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=timeout)


def test_the_environment_of_torchrun_and_of_a_plain_process():
    assert env_from({}) == DistEnv(rank=0, world_size=1, local_rank=0)
    assert env_from({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == DistEnv(3, 4, 1)
    assert not env_from({}).distributed and env_from({"RANK": "0", "WORLD_SIZE": "2"}).distributed


def test_the_ranks_shares_of_each_batch_make_the_single_process_batch():
    groups = [i % 2 for i in range(23)]
    single = InfiniteGroupedBatchSampler(groups, 23, batch_size=4, seed=5, start_iter=3)
    shards = [InfiniteGroupedBatchSampler(groups, 23, batch_size=4, seed=5, start_iter=3, rank=r, world_size=2)
              for r in range(2)]
    batches = 0
    for whole, first, second in itertools.islice(zip(single, *shards), 30):  # several passes over the 23 images
        assert len(first) == len(second) == 2 and first + second == whole
        batches += 1
    assert batches == 30
    with pytest.raises(ValueError, match="equal share"):
        InfiniteGroupedBatchSampler(groups, 23, batch_size=3, world_size=2)


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("ddp")
    run = work / "run"
    proc = torchrun(2, *tiny_overrides(work / "data"), "dataset.shapes.num_train=8", "train.batch_size=4",
                    "train.max_iters=4", "train.checkpoint_period=2", f"hydra.run.dir={run}", cwd=work)
    return work, run, proc


def test_two_processes_train_one_model_into_rank_0s_run_directory(two_process_run):
    work, run, proc = two_process_run
    assert proc.returncode == 0, output_of(proc)
    # Rank 1 made no run directory of its own (no outputs/<date>/, no .hydra copy in the working directory).
    assert sorted(p.name for p in work.iterdir() if not p.name.startswith(".data")) == ["data", "run"]
    assert not (work / ".hydra").exists()
    log = (run / "train.log").read_text()
    for iteration in range(1, 5):  # logged once, by rank 0
        assert log.count(f"iter {iteration}/4 ") == 1, log
    assert "batch size 4" in log
    assert (run / "metrics.json").is_file() and list((run / "tensorboard").glob("events.out.tfevents.*"))
    state = torch.load(run / "checkpoints/last.pt", map_location="cpu", weights_only=True)
    assert state["iteration"] == 4
    assert not any(key.startswith("module.") for key in state["model"])  # the plain model's state


def test_a_two_process_checkpoint_resumes_in_one_process(two_process_run, tmp_path):
    from helpers import run_command

    work, run, proc = two_process_run
    assert proc.returncode == 0, output_of(proc)
    resumed = run_command("frcnn-train", *tiny_overrides(work / "data"), "dataset.shapes.num_train=8",
                          "train.batch_size=4", "train.max_iters=6", "train.resume=auto", f"hydra.run.dir={run}",
                          cwd=tmp_path)
    assert resumed.returncode == 0, output_of(resumed)
    log = (run / "train.log").read_text()
    assert "at iteration 4" in log and log.count("iter 5/6 ") == 1 and log.count("iter 6/6 ") == 1
    assert torch.load(run / "checkpoints/last.pt", map_location="cpu", weights_only=True)["iteration"] == 6


def test_a_batch_that_does_not_divide_stops_every_rank_with_one_message(tmp_path):
    proc = torchrun(2, *tiny_overrides(tmp_path / "data"), "train.batch_size=3", f"hydra.run.dir={tmp_path / 'run'}",
                    cwd=tmp_path, timeout=120)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert text.count("train.batch_size=3 does not divide over the 2 processes") == 1, text
    # No traceback from our code: the ranks exit cleanly with status 1 (torchrun then reports the failed children,
    # with a traceback of its own launcher).
    frames = [line for line in text.splitlines() if line.strip().startswith('File "')]
    assert not [frame for frame in frames if "/frcnn/" in frame], text


def test_two_process_evaluation_gives_the_single_process_metrics_and_detections(two_process_run, tmp_path):
    from helpers import run_command

    work, run, proc = two_process_run
    assert proc.returncode == 0, output_of(proc)
    # The 8 training images in batches of 2: rank 0 takes batches 0 and 2, rank 1 batches 1 and 3.
    args = [f"checkpoint={run / 'checkpoints/last.pt'}", "split=train", "batch_size=2", "loader.num_workers=0",
            "model.roi.score_thresh=0.0"]  # an untrained model: keep every detection, so there is much to compare
    single = run_command("frcnn-eval", *args, f"hydra.run.dir={tmp_path / 'one'}", cwd=tmp_path)
    assert single.returncode == 0, output_of(single)
    double = torchrun(2, *args, f"hydra.run.dir={tmp_path / 'two'}", cwd=tmp_path, command="eval")
    assert double.returncode == 0, output_of(double)
    assert double.stdout.count("mAP") == single.stdout.count("mAP") > 0  # printed by rank 0 only
    import json

    one, two = tmp_path / "one", tmp_path / "two"
    assert json.loads((one / "metrics.json").read_text()) == json.loads((two / "metrics.json").read_text())
    detections = json.loads((one / "detections.json").read_text())
    assert len(detections) > 8 and detections == json.loads((two / "detections.json").read_text())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "two"]  # rank 1 wrote nothing


def test_an_unknown_config_key_stops_every_rank_with_one_message(tmp_path):
    proc = torchrun(2, "train.no_such_key=1", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, timeout=120)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert text.count("Could not override 'train.no_such_key'") == 1, text  # Hydra's error, from rank 0 only
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


def test_two_machines_meeting_through_a_c10d_rendezvous_train_one_model(tmp_path):
    """Two torchrun launches (as on two machines, here both on 127.0.0.1) form one job of two ranks; the launch
    that got rank 0 writes the run directory, the other writes nothing."""
    port = free_port()
    nodes = [tmp_path / "node0", tmp_path / "node1"]
    args = [*tiny_overrides(tmp_path / "shared_data"), "dataset.shapes.num_train=8", "train.batch_size=2",
            "train.max_iters=2", "hydra.run.dir=run"]
    env = {**os.environ, "PYTHONPATH": pythonpath(), "HYDRA_FULL_ERROR": "0", "PYTHONWARNINGS": "ignore"}
    launches = []
    for node_rank, node in enumerate(nodes):
        node.mkdir()
        command = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1",
                   f"--node_rank={node_rank}", "--rdzv_backend=c10d", f"--rdzv_endpoint=127.0.0.1:{port}",
                   "--rdzv_id=frcnn-test", "-m", "frcnn.cli.train", *map(str, args)]
        launches.append(subprocess.Popen(command, cwd=node, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                         text=True))
    outputs = [launch.communicate(timeout=240)[0] for launch in launches]
    assert [launch.returncode for launch in launches] == [0, 0], "\n".join(outputs)
    written = [node for node in nodes if (node / "run" / "train.log").exists()]
    assert len(written) == 1, [sorted(p.name for p in node.iterdir()) for node in nodes]
    other = nodes[1 - nodes.index(written[0])]
    assert list(other.iterdir()) == []  # the other machine's rank wrote nothing at all
    log = (written[0] / "run" / "train.log").read_text()
    assert log.count("iter 2/2 ") == 1 and "batch size 2" in log


def test_synchronised_batchnorm_is_bn_in_one_process_and_needs_cuda_in_several(tmp_path, monkeypatch):
    from frcnn.engine.launch import synchronised_batchnorm

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    assert synchronised_batchnorm(model, "sync_bn", torch.device("cpu")) is model  # one process: plain BN
    proc = torchrun(2, *tiny_overrides(tmp_path / "data"), "backbone.norm=sync_bn", f"hydra.run.dir={tmp_path / 'run'}",
                    cwd=tmp_path, timeout=120)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert text.count("sync_bn (backbone.norm or model.fpn.norm) needs CUDA") == 1, text
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    if torch.cuda.is_available():
        converted = synchronised_batchnorm(model, "sync_bn", torch.device("cuda"))
        assert isinstance(converted[1], torch.nn.SyncBatchNorm)


EQUIVALENCE = ["dataset.shapes.num_train=8", "train.batch_size=4", "model.input.min_size=[96,128]",
               "loader.hflip_prob=0.5", "train.eval_period=0", "train.checkpoint_period=2"]
# gloo sums the ranks' gradients in another order than one process's backward sums the batch: float32 rounding,
# 1.1e-6 after these 4 steps on the project machine. Before the samples were keyed per image, 1 and 2 processes
# differed by 8.6e-4 after 3 steps.
WEIGHT_TOLERANCE = 5e-5


def max_weight_difference(a, b) -> float:
    first = torch.load(a, map_location="cpu", weights_only=True)["model"]
    second = torch.load(b, map_location="cpu", weights_only=True)["model"]
    assert first.keys() == second.keys()
    return max((first[k].float() - second[k].float()).abs().max().item() for k in first if first[k].is_floating_point())


def test_one_and_two_processes_train_the_same_model_and_resume_across_world_sizes(tmp_path):
    """Flips, multi-scale and the RPN/ROI samples on: 4 iterations of the global batch 4 in 1 process, in 2
    processes, and in 2 processes to iteration 2 then 1 process from its checkpoint, end with the same weights."""
    from helpers import run_command

    args = [*tiny_overrides(tmp_path / "data"), *EQUIVALENCE]
    one = run_command("frcnn-train", *args, "train.max_iters=4", f"hydra.run.dir={tmp_path / 'one'}", cwd=tmp_path)
    assert one.returncode == 0, output_of(one)
    two = torchrun(2, *args, "train.max_iters=4", f"hydra.run.dir={tmp_path / 'two'}", cwd=tmp_path)
    assert two.returncode == 0, output_of(two)
    half = torchrun(2, *args, "train.max_iters=2", f"hydra.run.dir={tmp_path / 'mixed'}", cwd=tmp_path)
    assert half.returncode == 0, output_of(half)
    rest = run_command("frcnn-train", *args, "train.max_iters=4", "train.resume=auto",
                       f"hydra.run.dir={tmp_path / 'mixed'}", cwd=tmp_path)
    assert rest.returncode == 0, output_of(rest)

    last = "checkpoints/last.pt"
    moved = max_weight_difference(tmp_path / "one/checkpoints/iter_0000002.pt", tmp_path / "one" / last)
    assert moved > 100 * WEIGHT_TOLERANCE  # training changed the weights far beyond the tolerance
    for other in ("two", "mixed"):
        difference = max_weight_difference(tmp_path / "one" / last, tmp_path / other / last)
        assert difference < WEIGHT_TOLERANCE, f"{other}: max weight difference {difference:.3g} to one process"


def test_sync_bn_of_an_fpn_counts_as_the_models_trained_batchnorm():
    from frcnn.engine.launch import trained_batchnorm

    from helpers import compose_config

    assert trained_batchnorm(compose_config(["backbone=resnet50"])) == "frozen_bn"
    assert trained_batchnorm(compose_config(["backbone=resnet50_fpn", "fpn=torchvision_v2"])) == "bn"
    assert trained_batchnorm(compose_config(["backbone=resnet50_fpn", "model.fpn.norm=sync_bn"])) == "sync_bn"
    # a C4 model has no pyramid: its fpn keys do not count
    assert trained_batchnorm(compose_config(["backbone=resnet50", "model.fpn.norm=sync_bn"])) == "frozen_bn"
