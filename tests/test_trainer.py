"""The training engine on tiny modules: resume, accumulation, early stopping, SWA."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from xmc.neural.trainer import EarlyStopping, ModuleAverage, Trainer  # noqa: E402

X = torch.from_numpy(np.random.default_rng(0).normal(size=(24, 4)).astype(np.float32))
T = X @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])


def make(seed=0, dropout=0.0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(dropout), torch.nn.Linear(8, 1))


def step_of(net):
    return lambda rows: torch.nn.functional.mse_loss(net(X[rows]), T[rows])


def shuffled(rng, batch_size):
    return lambda: np.array_split(rng.permutation(len(X)), len(X) // batch_size)


def test_resume_equals_uninterrupted_run(tmp_path):
    def run(directory, fail_at=None):
        net, rng = make(dropout=0.2), np.random.default_rng(1)
        swa = ModuleAverage(net)
        trainer = Trainer(net, [{"params": net.parameters(), "lr": 1e-2}], total_steps=12, warmup_ratio=0.25,
                          swa=swa, swa_start=0.5, rng=rng, checkpoint_dir=directory, progress=False)
        calls = [0]

        def step(rows):
            calls[0] += 1
            if calls[0] == fail_at:
                raise KeyboardInterrupt
            return step_of(net)(rows)

        trainer.fit(shuffled(rng, 8), step)
        return net, trainer.history

    whole, history = run(None)
    with pytest.raises(KeyboardInterrupt):
        run(str(tmp_path / "ckpt"), fail_at=8)  # in the third epoch (3 steps each)
    resumed, history2 = run(str(tmp_path / "ckpt"))
    assert history2.steps == history.steps == 12 and history2.kept == history.kept
    for a, b in zip(whole.parameters(), resumed.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    again, history3 = run(str(tmp_path / "ckpt"))  # a finished run is not retrained
    assert history3.steps == 12
    for a, b in zip(whole.parameters(), again.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_accumulating_k_micro_batches_equals_one_batch_of_k_times_the_size():
    def run(batch_size, accum):
        net = make()
        trainer = Trainer(net, [{"params": net.parameters(), "lr": 1e-2}], total_steps=6, grad_accum=accum,
                          warmup_ratio=0.5, max_grad_norm=0.5, progress=False)
        trainer.fit(lambda: [np.arange(s, s + batch_size) for s in range(0, 24, batch_size)], step_of(net))
        return net, trainer.history

    small, h1 = run(4, 3)  # 6 micro-batches of 4 = 2 steps of 12 rows per epoch
    large, h2 = run(12, 1)
    assert h1.steps == h2.steps == 6 and h1.samples == h2.samples == 72
    for a, b in zip(small.parameters(), large.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_leftover_micro_batches_are_stepped():
    net = make()
    trainer = Trainer(net, [{"params": net.parameters(), "lr": 1e-2}], total_steps=100, grad_accum=3,
                      progress=False)
    batches = [np.arange(s, s + 6) for s in range(0, 24, 6)]  # 4 micro-batches: one step of 3, one of 1
    trainer.fit(lambda: batches[:4], step_of(net))
    assert trainer.history.steps == 100 and trainer.history.epochs == 50


def test_early_stopping_restores_the_best_state():
    net = make()
    scores = iter([1.0, 3.0, 2.0, 2.5, 0.0, 9.0])
    states = []

    def evaluate():
        states.append([p.detach().clone() for p in net.parameters()])
        return next(scores), {"score": 0}

    trainer = Trainer(net, [{"params": net.parameters(), "lr": 1e-2}], total_steps=50, progress=False,
                      early_stopping=EarlyStopping(evaluate, every=1, patience=3))
    trainer.fit(lambda: [np.arange(24)], step_of(net))
    h = trainer.history
    assert h.steps == 5 and h.best_step == 2 and h.kept == "best checkpoint (step 2)"
    assert [e["step"] for e in h.evaluations] == [1, 2, 3, 4, 5]
    for p, best in zip(net.parameters(), states[1]):
        torch.testing.assert_close(p, best, rtol=0, atol=0)


def test_swa_equals_the_average_by_hand():
    net = make()
    seen = []

    def step(rows):
        return step_of(net)(rows)

    swa = ModuleAverage(net)
    original_update = swa.update

    def update():
        seen.append([p.detach().clone() for p in net.parameters()])
        original_update()

    swa.update = update
    trainer = Trainer(net, [{"params": net.parameters(), "lr": 1e-2}], total_steps=8, swa=swa, swa_start=0.5,
                      progress=False)
    trainer.fit(lambda: [np.arange(0, 12), np.arange(12, 24)], step)
    assert len(seen) == 4 and trainer.history.kept == "SWA average of 4 steps"
    for i, p in enumerate(net.parameters()):
        torch.testing.assert_close(p, sum(s[i] for s in seen) / 4, rtol=1e-6, atol=1e-7)


def test_swa_is_kept_only_when_it_validates_as_well():
    net = make()
    calls = []

    def evaluate():
        calls.append(1)
        return (0.0 if len(calls) == 3 else float(len(calls))), {}  # the SWA check (3rd call) scores worse

    swa = ModuleAverage(net)
    trainer = Trainer(net, [{"params": net.parameters(), "lr": 1e-2}], total_steps=4, swa=swa, swa_start=0.5,
                      progress=False, early_stopping=EarlyStopping(evaluate, every=2, patience=5))
    trainer.fit(lambda: [np.arange(24)], step_of(net))
    final = [p.detach().clone() for p in net.parameters()]
    assert trainer.history.kept == "final" and trainer.history.swa["averaged_steps"] == 2
    swa.load_into()
    assert any(not torch.equal(a, b) for a, b in zip(final, net.parameters()))


def test_no_batches_trains_nothing():
    net = make()
    before = [p.detach().clone() for p in net.parameters()]
    trainer = Trainer(net, [{"params": net.parameters(), "lr": 1e-2}], total_steps=5, progress=False)
    assert trainer.fit(lambda: [], step_of(net)).steps == 0
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))


def assert_resume_refused(directory) -> None:
    """A run told to resume from ``directory`` refuses it with the one-line checkpoint error."""
    from xmc.errors import ModelFormatError

    net = make()
    trainer = Trainer(net, [{"params": net.parameters(), "lr": 1e-2}], total_steps=2, checkpoint_dir=str(directory),
                      progress=False)
    with pytest.raises(ModelFormatError, match="not a checkpoint of this xmc version"):
        trainer.fit(lambda: [np.arange(24)], step_of(net))


def test_a_foreign_checkpoint_is_refused_with_one_line(tmp_path):
    import json

    (tmp_path / "history.json").write_text(json.dumps({"history": {"best_recall": 0.5}, "rng": {}}))
    assert_resume_refused(tmp_path)


def test_a_checkpoint_holds_no_pickle_and_an_older_pickled_one_is_refused(tmp_path):
    import json
    import shutil

    net = make()
    trainer = Trainer(net, [{"params": net.parameters(), "lr": 1e-2}], total_steps=2, swa=ModuleAverage(net),
                      swa_start=0.5, checkpoint_dir=str(tmp_path / "ckpt"), progress=False)
    trainer.fit(lambda: [np.arange(24)], step_of(net))
    names = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert names == ["history.json", "model.safetensors", "training_state.json", "training_state.safetensors"]
    assert json.loads((tmp_path / "ckpt" / "training_state.json").read_text())["optimizer"]["param_groups"]
    # An older xmc wrote optimizer.pt, a pickle: it is not read (the run says to start afresh).
    old = tmp_path / "old"
    shutil.copytree(tmp_path / "ckpt", old)
    for name in ("training_state.json", "training_state.safetensors"):
        (old / name).unlink()
    torch.save({"optimizer": {}}, old / "optimizer.pt")
    assert_resume_refused(old)


def test_a_training_state_round_trips_through_safetensors_and_json(tmp_path):
    from xmc.neural.state_file import load_state, save_state

    state = {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.arange(4.0)}},
             "param_groups": [{"lr": 0.1, "betas": (0.9, 0.999), "params": [0], "name": None, "amsgrad": False}],
             "rng": torch.get_rng_state(), "scale": float("inf")}
    save_state(state, str(tmp_path), "s")
    back = load_state(str(tmp_path), "s")
    assert set(back["state"]) == {0} and back["param_groups"][0]["betas"] == (0.9, 0.999)
    assert torch.equal(back["state"][0]["exp_avg"], torch.arange(4.0)) and back["state"][0]["step"].item() == 3.0
    assert torch.equal(back["rng"], state["rng"]) and back["scale"] == float("inf")
    assert {k: v for k, v in back["param_groups"][0].items() if k != "betas"} == \
        {"lr": 0.1, "params": [0], "name": None, "amsgrad": False}
    with pytest.raises(TypeError, match="cannot store a dtype"):
        save_state({"dtype": torch.float32}, str(tmp_path), "bad")
