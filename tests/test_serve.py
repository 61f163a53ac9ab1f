"""xmc serve: every endpoint and error code, served == `xmc predict`, constraints, reload, body limit."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import shutil

import numpy as np
import pytest
import scipy.sparse as sp

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402

from xmc.cli.main import main as cli_main  # noqa: E402
from xmc.datasets.synthetic import make_corpus  # noqa: E402
from xmc.errors import ConfigError  # noqa: E402
from xmc.models.xr_linear import XRLinear, XRLinearConfig  # noqa: E402
from xmc.serve import ServeSettings, create_app  # noqa: E402
from xmc.serve.app import BodyLimitMiddleware  # noqa: E402
from xmc.serve.batcher import MicroBatcher  # noqa: E402
from xmc.serve.predictor import Job, Options  # noqa: E402
from xmc.serve.server import parse_model_args  # noqa: E402


@pytest.fixture(scope="module")
def corpus():
    return make_corpus(n_train=300, n_test=30, n_labels=30, seed=5)


def _train(corpus, topk: int, seed: int = 0) -> XRLinear:
    config = XRLinearConfig.from_dict({"features": {"min_df": 1}, "predict": {"topk": topk},
                                       "indexers": [{"branching": 2, "max_leaf_size": 8, "seed": seed}]})
    return XRLinear(config).fit(corpus.train, progress=False)


@pytest.fixture(scope="module")
def xr_dir(corpus, tmp_path_factory):
    directory = tmp_path_factory.mktemp("serve") / "xr"
    _train(corpus, topk=5).save(directory)
    return directory


def _documents(data, rows):
    return [{"id": data.ids[i], "title": data.titles[i] if data.titles else None, "text": data.texts[i]}
            for i in rows]


@pytest.fixture(scope="module")
def client(xr_dir):
    with TestClient(create_app({"xr": str(xr_dir)}, ServeSettings(max_documents=8, max_body_bytes=4096)),
                    raise_server_exceptions=False) as c:
        yield c


def _cli_predict(tmp_path, model_dir, docs, *args):
    src = tmp_path / "docs.jsonl"
    src.write_text("".join(json.dumps({**d, "labels": []}) + "\n" for d in docs), encoding="utf-8")
    out = tmp_path / "pred.jsonl"
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli_main(["predict", "--model", str(model_dir), "--input", str(src), "--out", str(out), "--overwrite",
                         *args]) == 0
    return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]


def test_served_predictions_equal_xmc_predict(client, xr_dir, corpus, tmp_path):
    docs = _documents(corpus.test, range(8))
    for args, body in [((), {}), (("--topk", "3", "--beam-size", "2", "--threshold", "0.2"),
                                  {"topk": 3, "beam_size": 2, "threshold": 0.2})]:
        expected = _cli_predict(tmp_path, xr_dir, docs, *args)
        many = client.post("/v1/models/xr/predict", json={"documents": docs, **body})
        assert many.status_code == 200
        assert many.json()["predictions"] == expected  # same ids, labels (best first) and scores
        one = [client.post("/v1/models/xr/predict", json={"documents": [d], **body}).json()["predictions"][0]
               for d in docs[:3]]
        assert one == expected[:3]
    answer = many.json()
    assert answer["model"] == "xr" and len(answer["model_version"]) == 12
    # Without ids, a document is named by its position, as `xmc predict` names a line.
    plain = client.post("/v1/models/xr/predict", json={"documents": [{"text": "a"}, {"text": "b"}]}).json()
    assert [p["id"] for p in plain["predictions"]] == ["0", "1"]


def test_information_endpoints(client, xr_dir, corpus):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready", "models": ["xr"]}
    listed = client.get("/v1/models").json()["models"]
    assert [m["name"] for m in listed] == ["xr"] and listed[0]["config"] is None
    info = client.get("/v1/models/xr").json()
    assert info["kind"] == "xr-linear" and info["n_labels"] == len(corpus.train.labels)
    assert info["config"]["predict"]["topk"] == 5 and info["versions"]["xmc"] and info["trained_at"]
    assert info["has_taxonomy"] is False and info["directory"] == str(xr_dir)
    names = corpus.train.labels.names
    prefix = names[0][:3]
    labels = client.get("/v1/models/xr/labels", params={"prefix": prefix}).json()
    assert labels["labels"] == [n for n in names if n.startswith(prefix)] and labels["total"] == len(labels["labels"])
    assert client.get("/v1/models/xr/labels").json()["labels"] == names
    assert "/v1/models/{name}/predict" in client.get("/openapi.json").json()["paths"]
    assert client.get("/docs").status_code == 200


def test_a_body_that_is_not_json_is_415(client):
    for headers in ({"content-type": "text/plain"}, {}):
        response = client.post("/v1/models/xr/predict", content=b'{"documents": [{"text": "x"}]}', headers=headers)
        assert response.status_code == 415 and response.json()["error"] == "unsupported media type"
    assert client.post("/v1/models/xr/predict", json={"documents": [{"text": "x"}]}).status_code == 200


@pytest.mark.parametrize("body, status, error", [
    (b'{"documents": [', 400, "invalid JSON"),
    (b'{"documents": []}', 422, "invalid request"),
    (b'{"documents": [{"text": "x"}], "topk": 0}', 422, "invalid request"),
    (b'{"documents": [{"text": "x"}], "unknown_key": 1}', 422, "invalid request"),
    (b'{"documents": [{"text": "x"}], "threshold": NaN}', 422, "invalid request"),  # would drop every label
    (b'{"documents": [{"text": "x"}], "threshold": 1e400}', 422, "invalid request"),
    (b'{"documents": [{"text": 3}]}', 422, "invalid request"),
    (b'{"documents": [{"text": "x"}], "topk": "3"}', 422, "invalid request"),  # strict: no coercion of strings,
    (b'{"documents": [{"text": "x"}], "topk": 3.5}', 422, "invalid request"),  # floats or booleans
    (b'{"documents": [{"text": "x", "id": true}]}', 422, "invalid request"),  # echoed back as "1" before
    (json.dumps({"documents": [{"text": "x"}] * 9}).encode(), 422, "too many documents"),
    (b'{"documents": [{"text": "x"}, {"title": "", "text": "  "}]}', 422, "empty document"),
    (b'{"documents": [{"text": "x"}], "allowed_labels": ["no such label"]}', 422, "unknown labels"),
    (json.dumps({"documents": [{"text": "x" * 5000}]}).encode(), 413, "request body too large"),
])
def test_errors_are_json_with_their_status(client, body, status, error):
    response = client.post("/v1/models/xr/predict", content=body, headers={"content-type": "application/json"})
    assert response.status_code == status
    answer = response.json()
    assert answer["error"] == error and answer["detail"] and set(answer) == {"error", "detail"}


def test_a_model_predicts_once_before_it_takes_requests(xr_dir, monkeypatch):
    """Its one-time work (numba's kernels, the TF-IDF n-gram lookup) is done before /readyz, not on a request."""
    from xmc.serve import registry

    calls = []
    real = registry.predict_jobs
    monkeypatch.setattr(registry, "predict_jobs", lambda model, jobs: calls.append(jobs) or real(model, jobs))
    app = create_app({"xr": str(xr_dir)}, ServeSettings())
    assert [job.documents[0]["id"] for jobs in calls for job in jobs] == ["warm-up"]
    with TestClient(app) as c:
        assert c.get("/readyz").status_code == 200
        assert c.post("/v1/models/xr/predict", json={"documents": [{"id": "a", "text": "x"}]}).status_code == 200
    assert len(calls) == 2


def test_unknown_model_route_and_unexpected_errors(client, monkeypatch, caplog):
    for method, path in [("get", "/v1/models/nope"), ("post", "/v1/models/nope/predict"),
                         ("get", "/v1/models/nope/labels"), ("post", "/v1/models/nope/reload"), ("get", "/nowhere")]:
        response = getattr(client, method)(path, **({"json": {"documents": [{"text": "x"}]}} if method == "post" else {}))
        assert response.status_code == 404 and set(response.json()) == {"error", "detail"}
    assert client.get("/v1/models/xr/predict").status_code == 405
    entry = client.app.state.registry.get("xr")
    monkeypatch.setattr(entry.batcher, "_run", lambda jobs: (_ for _ in ()).throw(RuntimeError("boom secret")))
    with caplog.at_level("ERROR", logger="xmc.serve"):
        response = client.post("/v1/models/xr/predict", json={"documents": [{"text": "x"}]})
    assert response.status_code == 500 and response.json()["error"] == "internal error"
    assert "boom" not in response.text and "Traceback" not in response.text
    assert "boom secret" in caplog.text  # logged, with its traceback, for the operator


def test_allowed_labels_restrict_the_search(client, xr_dir, corpus):
    model = XRLinear.load(xr_dir)
    names = model.labels_.names
    docs = _documents(corpus.test, range(6))
    allowed = names[::3]
    answer = client.post("/v1/models/xr/predict", json={"documents": docs, "allowed_labels": allowed, "topk": 4}).json()
    ids = [model.labels_.index[n] for n in allowed]
    selected = sp.csr_matrix((np.ones(len(ids) * 6), (np.repeat(np.arange(6), len(ids)), np.tile(ids, 6))),
                             shape=(6, len(names)))
    expected = model.predict(corpus.test.subset(range(6)), topk=4, selected_outputs=selected)
    for i, prediction in enumerate(answer["predictions"]):
        assert set(prediction["labels"]) <= set(allowed) and prediction["labels"]
        row = expected[i]
        assert sorted(prediction["labels"]) == sorted(names[j] for j in row.indices)


def test_body_limit_refuses_before_reading_the_whole_body():
    chunks = [b"x" * 1000] * 50
    pulled = []

    async def receive():
        pulled.append(1)
        return {"type": "http.request", "body": chunks[len(pulled) - 1], "more_body": len(pulled) < len(chunks)}

    async def app(scope, receive, send):  # reads the body the way Starlette does, chunk by chunk
        while (await receive()).get("more_body"):
            pass

    sent = []

    async def send(message):
        sent.append(message)

    middleware = BodyLimitMiddleware(app, max_bytes=4096)
    scope = {"type": "http", "method": "POST", "path": "/", "headers": []}
    with pytest.raises(Exception) as exc:  # in the app, FastAPI turns this into the 413 answer
        asyncio.run(middleware(scope, receive, send))
    assert exc.value.status_code == 413 and len(pulled) == 5  # stopped at the first chunk past 4096 bytes
    # A declared Content-Length over the limit is answered before anything is read.
    pulled.clear()
    asyncio.run(middleware({**scope, "headers": [(b"content-length", b"50000")]}, receive, send))
    assert not pulled and sent[0]["status"] == 413


def test_micro_batcher_groups_concurrent_jobs_by_options():
    from concurrent.futures import ThreadPoolExecutor

    calls = []

    def run(jobs):
        calls.append(sum(len(j) for j in jobs))
        return [[doc["id"] for doc in job.documents] for job in jobs]

    async def scenario(max_documents):
        batcher = MicroBatcher(run, executor, max_documents=max_documents, max_wait=0.05)
        jobs = [Job([{"id": f"{i}-{k}"} for k in range(1 + i % 2)], Options(topk=1 + i % 2)) for i in range(6)]
        results = await asyncio.gather(*(batcher.submit(job) for job in jobs))
        await batcher.close()
        assert await batcher.submit(Job([{"id": "late"}], Options())) == ["late"]  # after close: alone
        return jobs, results

    with ThreadPoolExecutor(1) as executor:
        jobs, results = asyncio.run(scenario(9))
        assert results == [[d["id"] for d in job.documents] for job in jobs]
        assert sorted(calls[:-1]) == [3, 6] and calls[-1] == 1  # topk=1: 3 one-doc jobs; topk=2: 3 two-doc jobs
        calls.clear()
        jobs, results = asyncio.run(scenario(6))  # 9 documents, at most 6 a batch: jobs 0-3, then 4-5
        assert results == [[d["id"] for d in job.documents] for job in jobs]
        assert calls[:-1] == [2, 4, 1, 2]


def test_reload_under_concurrent_requests_loses_none(corpus, tmp_path):
    directory = tmp_path / "xr"
    _train(corpus, topk=5).save(directory)
    app = create_app({"xr": str(directory)})
    registry = app.state.registry
    old_version = registry.get("xr").version
    shutil.rmtree(directory)
    _train(corpus, topk=2, seed=1).save(directory)  # the retrained model: other tree, other topk
    docs = _documents(corpus.test, range(4))

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            tasks = []

            async def stream(until):  # requests keep arriving before, during and after the swap
                while not until.done() or len(tasks) < 40:
                    tasks.append(asyncio.create_task(
                        c.post("/v1/models/xr/predict", json={"documents": [docs[len(tasks) % 4]]})))
                    await asyncio.sleep(0.002)

            reload = asyncio.create_task(asyncio.sleep(0.02))
            reload = asyncio.ensure_future(_after(reload, c.post("/v1/models/xr/reload")))
            await stream(reload)
            answers = await asyncio.gather(*tasks)
            after = await c.post("/v1/models/xr/predict", json={"documents": docs})
            return await reload, answers, after

    reload, answers, after = asyncio.run(scenario())
    assert reload.status_code == 200 and reload.json()["previous_version"] == old_version
    new_version = reload.json()["model_version"]
    assert new_version != old_version
    assert all(a.status_code == 200 for a in answers)
    versions = {a.json()["model_version"] for a in answers}
    assert versions == {old_version, new_version}
    assert versions <= {old_version, new_version}
    for a in answers:  # each answer comes whole from the version it names (topk 5 vs 2)
        top = 5 if a.json()["model_version"] == old_version else 2
        assert len(a.json()["predictions"][0]["labels"]) <= top
    assert after.json()["model_version"] == new_version
    assert all(len(p["labels"]) <= 2 for p in after.json()["predictions"])


async def _after(first, then):
    await first
    return await then


def test_failed_reload_keeps_the_old_model(corpus, tmp_path):
    directory = tmp_path / "xr"
    _train(corpus, topk=3).save(directory)
    with TestClient(create_app({"xr": str(directory)})) as c:
        before = c.post("/v1/models/xr/predict", json={"documents": [{"text": "word"}]}).json()
        (directory / "tree-0" / "layers.json").write_text("{broken", encoding="utf-8")
        response = c.post("/v1/models/xr/reload")
        assert response.status_code == 409 and response.json()["error"] == "reload failed"
        assert "layers" in response.json()["detail"] and before["model_version"] in response.json()["detail"]
        assert c.post("/v1/models/xr/predict", json={"documents": [{"text": "word"}]}).json() == before


def test_model_arguments_and_cli_errors(xr_dir, tmp_path, capsys):
    assert parse_model_args([str(xr_dir)]) == {"xr": str(xr_dir)}
    assert parse_model_args([f"prod={xr_dir}", f"{xr_dir}/"]) == {"prod": str(xr_dir), "xr": f"{xr_dir}/"}
    with pytest.raises(ConfigError, match="two models named"):
        parse_model_args([str(xr_dir), f"xr={xr_dir}"])
    assert cli_main(["serve", str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err
    assert cli_main(["serve", str(xr_dir), "--max-wait-ms", "-1"]) == 2


@pytest.fixture(scope="module")
def masked_dir(tmp_path_factory, tiny_bert_dir):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from test_masked_bert import CATALOGUE, COLOURS, FILLER, make_products, taxonomy_dict, tiny_config

    from xmc.models.masked_bert import MaskedBert

    # a random 2-layer BERT over the catalogue's words
    words = sorted({w for pairs in CATALOGUE.values() for w, _ in pairs} | {w for w, _ in COLOURS} | set(FILLER))
    bert = tiny_bert_dir("serve-bert", words, hidden_size=32, intermediate_size=64)
    train = make_products(60, seed=0)
    model = MaskedBert(tiny_config(bert, train={"epochs": 1})).fit(train, taxonomy=taxonomy_dict(), progress=False)
    directory = tmp_path_factory.mktemp("serve-mb") / "mb"
    model.save(directory)
    return directory, make_products(12, seed=1, labels=train.labels), taxonomy_dict()


def test_category_and_allowed_labels_restrict_a_taxonomy_model(masked_dir, tmp_path):
    directory, test, taxonomy = masked_dir
    docs = [{"id": test.ids[i], "title": test.titles[i], "description": test.descriptions[i],
             "category": test.categories[i]} for i in range(len(test))]
    with TestClient(create_app({"mb": str(directory)})) as c:
        answer = c.post("/v1/models/mb/predict", json={"documents": docs, "threshold": 0.0, "topk": 10}).json()
        assert answer["predictions"] == _cli_predict(tmp_path, directory, docs, "--threshold", "0.0", "--topk", "10")
        allowed = ["Color=Red", "Heel=High", "Sleeve=Long"]
        constrained = c.post("/v1/models/mb/predict", json={"documents": docs, "threshold": 0.0,
                                                            "allowed_labels": allowed}).json()
        info = c.get("/v1/models/mb").json()
        bad = c.post("/v1/models/mb/predict", json={"documents": docs[:1], "beam_size": 3})
    assert info["kind"] == "masked-bert" and info["has_taxonomy"] is True
    assert bad.status_code == 422 and "beam" in bad.json()["detail"]
    relevant = {cat: set(labels) for cat, labels in taxonomy.items()}
    for doc, free, limited in zip(docs, answer["predictions"], constrained["predictions"]):
        assert free["labels"] and set(free["labels"]) <= relevant[doc["category"]]
        assert set(limited["labels"]) <= relevant[doc["category"]] & set(allowed)
        # the restricted answer is the unrestricted ranking filtered (masked-bert scores every label)
        assert limited["labels"] == [n for n in free["labels"] if n in allowed]



@pytest.fixture(scope="module")
def xt_dir(tmp_path_factory, tiny_bert_dir):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    import test_xtransformer as txt

    from xmc.models.xtransformer import MatcherConfig, XTransformer

    corpus = make_corpus(n_train=240, n_test=40, n_labels=40, noise_words=200, doc_length=30, seed=3)
    words = sorted({w for t in corpus.train.texts for w in t.lower().split()})  # as test_xtransformer's tiny_bert
    bert = tiny_bert_dir("serve-xt-bert", words, hidden_size=32, intermediate_size=64)
    config = txt.tiny_config(bert, matcher=MatcherConfig(kind="frozen", epochs=1, device="cpu", top_b=4, amp=False))
    directory = tmp_path_factory.mktemp("serve-xt") / "xt"
    XTransformer(config).fit(corpus.train, progress=False).save(directory)
    return directory, corpus.test


def test_neural_requests_are_micro_batched_and_equal_xmc_predict(xt_dir, tmp_path):
    directory, test = xt_dir
    docs = [{"id": test.ids[i], "text": test.texts[i]} for i in range(12)]
    expected = _cli_predict(tmp_path, directory, docs)
    app = create_app({"xt": str(directory)}, ServeSettings(max_wait_ms=50))

    async def scenario():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
            return await asyncio.gather(*(c.post("/v1/models/xt/predict", json={"documents": [d]}) for d in docs))

    answers = asyncio.run(scenario())
    assert app.state.registry.get("xt").batcher.calls < len(docs)  # concurrent requests shared model calls
    for answer, want in zip(answers, expected):
        got = answer.json()["predictions"][0]
        assert got["id"] == want["id"] and got["labels"] == want["labels"]
        np.testing.assert_allclose(got["scores"], want["scores"], rtol=1e-5)
    allowed = sorted({label for want in expected for label in want["labels"][:1]})
    with TestClient(app) as c:
        limited = c.post("/v1/models/xt/predict", json={"documents": docs, "allowed_labels": allowed}).json()
    assert all(p["labels"] and set(p["labels"]) <= set(allowed) for p in limited["predictions"])


def test_threshold_and_allowed_labels_for_a_model_without_those_arguments():
    """A model that takes neither threshold nor selected_outputs: the server applies both itself."""
    from types import SimpleNamespace

    from xmc.data.dataset import LabelVocabulary
    from xmc.models.base import Capabilities, XMCModel
    from xmc.serve.predictor import predict_jobs

    scores = sp.csr_matrix(np.array([[0.9, 0.2, 0.6, 0.0], [0.1, 0.8, 0.0, 0.7]], dtype=np.float32))
    calls = []

    class Model:  # scores every label it is asked for, like GUDN over its beam
        name = "fake"
        capabilities = Capabilities(supports_threshold=False, supports_beam=True, supports_progress=False)
        labels_ = LabelVocabulary(["a", "b", "c", "d"])
        config = SimpleNamespace(predict=SimpleNamespace(topk=2))
        resolve_predict, _default_threshold = XMCModel.resolve_predict, XMCModel._default_threshold

        def predict(self, inputs, *, topk=None, beam_size=None):
            calls.append(topk)
            return scores

    docs = [{"id": "x", "text": "t"}, {"id": "y", "text": "u"}]
    out = predict_jobs(Model(), [Job(docs, Options(threshold=0.5))])[0]
    assert out == [{"id": "x", "labels": ["a", "c"], "scores": [pytest.approx(0.9), pytest.approx(0.6)]},
                   {"id": "y", "labels": ["b", "d"], "scores": [pytest.approx(0.8), pytest.approx(0.7)]}]
    allowed = np.array([1, 2])  # "b", "c": the model scores all labels, then only these are kept
    out = predict_jobs(Model(), [Job(docs, Options(topk=1, constrained=True), allowed)])[0]
    assert [p["labels"] for p in out] == [["c"], ["b"]] and calls[-1] == 4


@pytest.mark.parametrize("preset", [None, "ACTIVE"])
def test_the_server_lets_idle_openmp_threads_sleep_unless_told_otherwise(xr_dir, monkeypatch, preset):
    import os

    import uvicorn

    from xmc.serve import app, server

    if preset is None:
        monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    else:
        monkeypatch.setenv("OMP_WAIT_POLICY", preset)
    seen = []
    create_app = app.create_app
    monkeypatch.setattr(app, "create_app", lambda *a, **kw: seen.append(os.environ.get("OMP_WAIT_POLICY"))
                        or create_app(*a, **kw))
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: seen.append(os.environ.get("OMP_WAIT_POLICY")))
    server.serve({"xr": str(xr_dir)}, port=_free_port())
    # Set before the models (and with them the OpenMP runtimes) load; a value the user set wins.
    assert seen == [preset or "PASSIVE"] * 2


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_huge_topk_and_beam_answer_every_label_at_once(client, corpus):
    n_labels = client.get("/v1/models/xr").json()["n_labels"]
    for extra in ({"topk": 10**20}, {"topk": 10**20, "beam_size": 10**11}):
        response = client.post("/v1/models/xr/predict", json={"documents": [{"text": corpus.test.texts[0]}], **extra})
        assert response.status_code == 200 and len(response.json()["predictions"][0]["labels"]) == n_labels


def test_start_up_refuses_what_cannot_serve_before_loading(xr_dir, tmp_path, capsys):
    import socket

    from xmc.data.dataset import LabelVocabulary, XMCDataset
    from xmc.serve import server

    # A model trained on XC features cannot featurise the text requests carry: one line at start-up.
    rng = np.random.default_rng(0)
    X = sp.random(40, 20, density=0.3, format="csr", dtype=np.float32, random_state=rng)
    Y = sp.csr_matrix((rng.random((40, 6)) < 0.3).astype(np.float32))
    data = XMCDataset(ids=[str(i) for i in range(40)], texts=[""] * 40, Y=Y, X=X,
                      labels=LabelVocabulary([f"l{j}" for j in range(6)]))
    XRLinear(XRLinearConfig()).fit(data, progress=False).save(tmp_path / "xc")
    with pytest.raises(ConfigError, match="trained on precomputed features"):
        create_app({"xc": str(tmp_path / "xc")})
    # A port out of range (the socket layer would take it modulo 65536) or in use: refused up front.
    assert cli_main(["serve", str(xr_dir), "--port", "99999"]) == 2
    assert "from 1 to 65535" in capsys.readouterr().err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(ConfigError, match=r"cannot listen on 127.0.0.1:\d+"):
            server.serve({"xr": str(xr_dir)}, port=busy.getsockname()[1])
