"""A multi-node ray cluster on this machine: trials on other nodes, results in remote storage, resume.

`ray.cluster_utils.Cluster` starts a head and two worker nodes, each its own raylet and object store,
all bound to 127.0.0.1; the workers alone carry the custom resource "trainer", so a trial that asks
for it runs on a node other than the driver's. A moto S3 server on 127.0.0.1 stands in for a bucket.
The fixtures stop the server and the cluster themselves.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.representation.test_representation import NETS, small_config
from weightspace.data.dataset import ZooDataset
from weightspace.data.splits import ModelSplit
from weightspace.io.local_ray import WORKER_NICENESS
from weightspace.pipeline import storage
from weightspace.representation import Learner
from weightspace.representation.config import DataConfig
from weightspace.zoo.store import Zoo

ray = pytest.importorskip("ray")
pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.long]

ROOT = Path(__file__).resolve().parents[2]
LOCAL = "127.0.0.1"
AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def s3():
    """A local S3 server: ``(endpoint, a function bucket_name -> storage URI)``."""
    server_module = pytest.importorskip("moto.server")
    boto3 = pytest.importorskip("boto3")
    with pytest.MonkeyPatch.context() as env:
        for key, value in AWS.items():
            env.setenv(key, value)  # before the cluster starts: its workers write to the bucket
        server = server_module.ThreadedMotoServer(ip_address=LOCAL, port=0, verbose=False)
        server.start()
        try:
            host, port = server.get_host_and_port()
            endpoint = f"http://{host}:{port}"
            client = boto3.client("s3", endpoint_url=endpoint)

            def bucket(name: str) -> str:
                client.create_bucket(Bucket=name)
                return f"s3://{name}/runs?endpoint_override={endpoint}&scheme=http&region=us-east-1"

            yield client, bucket
        finally:
            server.stop()


@pytest.fixture(scope="module")
def cluster(s3):
    """Three ray nodes on 127.0.0.1: the head (1 CPU) and two workers (1 CPU and one "trainer" each),
    with token authentication on, the token in $RAY_AUTH_TOKEN (which drivers started here inherit)."""
    from ray._private import ray_constants
    from ray._raylet import AuthenticationTokenLoader, Config
    from ray.cluster_utils import Cluster

    def reread_auth_settings():  # this process read RAY_AUTH_* when ray started; make it read them again
        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()

    with pytest.MonkeyPatch.context() as env:
        # every ray process takes 127.0.0.1 as its node's address (ray's switch for single-machine
        # clusters; node processes read the variable, this process the constant read at import)
        env.setenv(ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR, "0")
        env.setattr(ray_constants, "ENABLE_RAY_CLUSTER", False)
        env.setenv(WORKER_NICENESS, "0")  # the nodes' workers at the test's priority (ray's default: 15 below)
        env.setenv("RAY_AUTH_MODE", "token")
        env.setenv("RAY_AUTH_TOKEN", uuid.uuid4().hex)
        reread_auth_settings()
        nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
        try:
            for _ in range(2):
                nodes.add_node(num_cpus=1, resources={"trainer": 1})
            nodes.wait_for_nodes()
            assert nodes.address.startswith(f"{LOCAL}:")
            yield nodes
        finally:
            nodes.shutdown()
    reread_auth_settings()  # back to what the environment says without the fixture


@pytest.fixture
def driver(cluster):
    """This process connected to the cluster as its driver."""
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        yield cluster
    finally:
        ray.shutdown()


def test_storage_locations_join_and_normalize(tmp_path):
    uri = "s3://bucket/runs?endpoint_override=http://127.0.0.1:9000&scheme=http"
    assert storage.join(uri, "exp") == "s3://bucket/runs/exp?endpoint_override=http://127.0.0.1:9000&scheme=http"
    assert storage.join("gs://bucket/", "exp") == "gs://bucket/exp"
    assert storage.join(tmp_path / "a" / ".." / "b", "exp") == str(tmp_path / "b" / "exp")
    assert not storage.exists(tmp_path / "nothing") and not storage.is_tune_run(tmp_path)
    with pytest.raises(ValueError, match="s3://bucket/prefix"):
        storage.exists("nosuchscheme://x/y")


def test_a_driver_without_the_clusters_token_is_refused_within_the_timeout_naming_the_variable(cluster):
    script = ("import sys\n"
              "from weightspace.pipeline.cluster import connect_ray\n"
              "from weightspace.errors import ClusterError\n"
              "try:\n"
              "    connect_ray(sys.argv[1], timeout_s=5, log_to_driver=False)\n"
              "except ClusterError as err:\n"
              "    print(err)\n")
    env = os.environ | {"RAY_AUTH_TOKEN": uuid.uuid4().hex, "PYTHONPATH": str(ROOT / "modules")}
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script, cluster.address], env=env, capture_output=True, text=True,
                          timeout=300)
    assert time.monotonic() - start < 60
    assert cluster.address in done.stdout and "RAY_AUTH_TOKEN" in done.stdout, done.stdout + done.stderr[-2000:]


def test_trials_on_another_node_run_without_the_drivers_zoo_folder(make_zoo, driver, tmp_path):
    """The zoo's folder is moved away after the driver opened it; trials that must run on a worker node
    still train, and report what a trial reading the zoo itself reports."""
    from weightspace.pipeline.tune import run_tuner

    make_zoo(models=12, **NETS).save(tmp_path / "zoo")
    zoo = Zoo.load(tmp_path / "zoo")
    config = small_config(epochs_per_step=1)
    config.data = DataConfig(path=str(tmp_path / "zoo"))
    shutil.move(tmp_path / "zoo", tmp_path / "moved")  # today's code: every trial fails, the zoo is not there
    uri = f"file://{tmp_path / 'runs'}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        grid = run_tuner(config, name="exp", storage_path=uri, iterations=2, zoo=zoo, evaluate_fn=None,
                         trial_resources={"trainer": 1}, verbose=0)
    result = grid[0]
    assert result.error is None and result.metrics["training_iteration"] == 2
    worker_nodes = {n["NodeID"] for n in ray.nodes() if n["Resources"].get("trainer")}
    assert result.metrics["node_ip"] == LOCAL and len(worker_nodes) == 2
    assert storage.is_tune_run(storage.join(uri, "exp"))
    assert any((tmp_path / "runs" / "exp").glob("*/checkpoint_000001/learner.pt"))

    # the same two iterations in this process, on the zoo read from its (moved) folder
    split = ModelSplit.of_zoo(zoo, config.data.fractions, config.data.seed)
    datasets = ZooDataset.splits(config.data, Zoo.load(tmp_path / "moved"), model_split=split)
    learner = Learner(config, datasets["train"].layout)
    expected, threads = [], torch.get_num_threads()
    torch.set_num_threads(1)  # as the trial, which takes its one assigned CPU
    try:
        for _ in range(2):
            row = learner.train_epoch(datasets["train"])
            expected.append(row | learner.evaluate(datasets, loss_splits=["val", "test"]))
    finally:
        torch.set_num_threads(threads)
    history = result.metrics_dataframe
    for key in ("loss_train", "loss_val", "rsq_val", "rsq_test"):
        # the same operations at one thread: equal up to float32 round-off
        np.testing.assert_allclose(history[key], [r[key] for r in expected], rtol=1e-5, err_msg=key)


def _script(*args: str) -> list[str]:
    return [sys.executable, str(ROOT / "11_tetris_seed" / "simclr_ae_tetris_seed.py"), "--smoke-test", "--no-report",
            *args]


def _objects(client, bucket: str) -> list[str]:
    return [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for o in page.get("Contents", [])]


def test_smoke_run_on_three_nodes_with_s3_storage_resumes_after_a_driver_kill(cluster, s3, tmp_path):
    client, bucket = s3
    env = os.environ | AWS | {"PYTHONPATH": str(ROOT / "modules")}
    common = ["--ray-address", cluster.address, "--datasets", str(tmp_path / "datasets")]
    whole_uri, killed_uri = bucket("whole"), bucket("killed")

    done = subprocess.run(_script(*common, "--storage", whole_uri, "--output-dir", str(tmp_path / "whole")),
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads((tmp_path / "whole" / "experiment.json").read_text())
    assert record["tune"] == storage.join(whole_uri, "whole")
    assert not (tmp_path / "whole" / "tune").exists()  # nothing of the run on the driver's disk
    assert any("/checkpoint_" in key for key in _objects(client, "whole"))

    out = tmp_path / "killed"
    run = [*common, "--storage", killed_uri, "--output-dir", str(out)]
    process = subprocess.Popen(_script(*run), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not any("/checkpoint_" in key for key in _objects(client, "killed")):
            assert process.poll() is None and time.monotonic() < deadline, "no checkpoint reached the bucket"
            time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert not (out / "results.json").exists()

    refused = subprocess.run(_script(*run), env=env, capture_output=True, text=True, timeout=600)
    assert refused.returncode != 0 and "--resume" in refused.stderr.strip().splitlines()[-1]
    resumed = subprocess.run(_script(*run, "--resume"), env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    whole = json.loads((tmp_path / "whole" / "results.json").read_text())
    again = json.loads((out / "results.json").read_text())
    assert again.keys() == whole.keys()
    _assert_same(again, whole)


def _assert_same(a, b, where: str = "results") -> None:
    """Equal JSON, numbers to float round-off (both runs train at one thread on the same machine)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-6, abs=1e-9, nan_ok=True), where
    else:
        assert a == b, where
