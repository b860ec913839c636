"""`latro bench` times each bare part on its own: switching gradient checkpointing off and back on
for the plain forward+backward belongs to no timed part."""

from types import SimpleNamespace

import torch

from latro import bench


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class FakePolicy:
    """Each call advances the clock by a known cost; toggling checkpointing costs 100 s."""

    is_gradient_checkpointing = True

    def __init__(self, clock):
        self.clock = clock

    def eval(self):
        pass

    def train(self):
        pass

    def generate(self, **kw):
        self.clock.now += 1.0

    def gradient_checkpointing_disable(self):
        self.clock.now += 100.0

    def gradient_checkpointing_enable(self, **kw):
        self.clock.now += 100.0

    def __call__(self, **kw):
        self.clock.now += 10.0 if "labels" in kw else 1000.0  # forward + backward, or the reference forward
        return SimpleNamespace(loss=SimpleNamespace(backward=lambda: None))


def test_bare_parts_exclude_the_checkpointing_toggles(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(bench.time, "perf_counter", clock)
    policy = FakePolicy(clock)
    optimizer = SimpleNamespace(step=lambda: None, zero_grad=lambda set_to_none: None)
    trainer = SimpleNamespace(policy=policy, tokenizer=SimpleNamespace(pad_token_id=0), optimizer=optimizer, ref=None)
    batch = SimpleNamespace(input_ids=torch.ones(1, 3, dtype=torch.long), attention_mask=torch.ones(1, 3),
                            segments=torch.tensor([[0, 1, 1]]))
    rollouts = [SimpleNamespace(num_sampled=2, prompt_ids=[5])]
    parts = bench._bare_parts(trainer, batch, rollouts)
    assert (parts["generate"], parts["forward_backward"], parts["optimizer"], parts["reference_forward"]) == (
        1.0, 10.0, 0.0, 1000.0)


def test_phase_ratios_against_hand_numbers():
    """Sampling is compared per generated token (latro stops finished rollouts early, the bare
    `generate` runs every row to the longest); training passes against the bare passes' sum."""
    step = {"time_generate": 20.0, "sampled_tokens": 1000, "time_score": 10.0, "time_update": 20.0}
    bare = {"generate": 40.0, "generated_tokens": 1600, "forward_backward": 25.0, "optimizer": 1.0,
            "reference_forward": 4.0}
    ratios = bench.phase_ratios(step, bare)
    assert ratios["sampling_per_token"] == (20.0 / 1000) / (40.0 / 1600)  # 0.8
    assert ratios["training_passes"] == 30.0 / 30.0
