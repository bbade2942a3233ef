"""Recon recomputed by hand with a predictor that depends on x and t: the DDIM chain from x_t to the clean image
(clipped to [-1, 1]), the distances of every timestep and query, and the setting chosen on the labelled slice,
which here differs from the one the scored part would pick. The deployed interface: strength -> grid step on 50-step
DDIM and on the 1000-step ancestral grid, DualMD's teacher at every step of a query as in generation, and the
distances of both samplers recomputed by hand."""

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler
from helpers.models import tiny_unet
from helpers.predictors import CheckingPredictor, affine_eps_np

from dualmd.attacks.base import per_sample_generators, per_sample_noise, train_test_split
from dualmd.attacks.recon import STEP_NOISE_STREAM, chain_timesteps, choose_setting, reconstruct
from dualmd.attacks.run import attack_sampler, build_attack
from dualmd.config.attacks import AttackConfig, ReconConfig
from dualmd.defense.dualmd import AlternatingTeachers
from dualmd.models.adapter import Schedule, UNetPredictor
from dualmd.sample import DeployedSampler, build_scheduler, img2img_start, run_sampler


@pytest.fixture(scope="module")
def schedule() -> Schedule:
    return Schedule.from_scheduler(DDPMScheduler(num_train_timesteps=1000))


def reconstruct_np(schedule, x, t, num_steps):
    chain = [t - (i * t) // num_steps for i in range(num_steps)]
    alphas = [float(schedule.alphas_cumprod[s]) for s in chain] + [1.0]
    for i, s in enumerate(chain):
        eps = affine_eps_np(x, s)
        x0_hat = (x - (1 - alphas[i]) ** 0.5 * eps) / alphas[i] ** 0.5
        x = alphas[i + 1] ** 0.5 * x0_hat + (1 - alphas[i + 1]) ** 0.5 * eps
    return np.clip(x, -1, 1)


def test_reconstruct_runs_the_ddim_chain_and_clips(schedule):
    x_t = torch.linspace(-3, 3, 32, dtype=torch.float64).view(2, 1, 4, 4)
    model = CheckingPredictor()
    out = reconstruct(model, schedule, x_t, 90, 3)
    assert out.dtype == torch.float64
    np.testing.assert_allclose(
        out.numpy(), reconstruct_np(schedule, x_t.numpy(), 90, 3), rtol=1e-5, atol=1e-6
    )
    assert (out == 1).any() and (out == -1).any() and ((out > -1) & (out < 1)).any()  # the clipping shows
    assert [int(t[0]) for _, t in model.calls] == [90, 60, 30]
    assert all(x.dtype == torch.float32 for x, _ in model.calls)


def test_chain_timesteps_floor_the_even_spacing():
    assert chain_timesteps(10, 3) == [10, 7, 4]
    assert chain_timesteps(9, 9) == list(range(9, 0, -1))


def test_choose_setting_takes_the_highest_auc_anywhere_in_the_grid():
    is_member = np.array([True, False, True, False])
    scores = {
        (10, 1): np.array([0.2, 0.1, 0.3, 0.4]),  # AUC 0.5
        (10, 2): np.array([0.9, 0.1, 0.8, 0.2]),  # AUC 1
        (20, 1): np.array([0.1, 0.9, 0.2, 0.8]),  # AUC 0
    }
    assert choose_setting(scores, is_member) == (10, 2)


def test_recon_scores_the_rest_with_the_setting_that_wins_on_the_labelled_slice(schedule):
    gen = torch.Generator().manual_seed(16)
    images = torch.rand(12, 1, 4, 4, generator=gen) * 1.6 - 0.8
    ids = np.arange(12) * 5 + 1
    is_member = np.array([True, False] * 6)
    recon = ReconConfig(timesteps=(30, 200), num_queries=(3, 1, 3), num_steps=2, train_fraction=0.5)
    cfg = AttackConfig(seed=16, batch_size=5, recon=recon)
    result = attack_sampler(
        "recon", cfg, sampler=CheckingPredictor(), schedule=schedule, images=images, sample_ids=ids,
        is_member=is_member,
    )  # fmt: skip
    x_0 = images.double().numpy()
    dist = np.zeros((2, 3, 12))
    for i, t in enumerate((30, 200)):
        a = float(schedule.alphas_cumprod[t])
        for j in range(3):
            eps = per_sample_noise(16, ids, (1, 4, 4), t, j).double().numpy()
            x_hat = reconstruct_np(schedule, a**0.5 * x_0 + (1 - a) ** 0.5 * eps, t, 2)
            dist[i, j] = np.linalg.norm((x_hat - x_0).reshape(12, -1), axis=1)
    scores = {(t, q): -dist[i, :q].mean(axis=0) for i, t in enumerate((30, 200)) for q in (1, 3)}
    train, test = train_test_split(is_member, 0.5, "recon")
    assert choose_setting({k: v[train] for k, v in scores.items()}, is_member[train]) == (30, 3)
    assert choose_setting({k: v[test] for k, v in scores.items()}, is_member[test]) == (
        30,
        1,
    )  # not the slice's
    np.testing.assert_array_equal(result.sample_ids, ids[test])
    np.testing.assert_array_equal(result.is_member, is_member[test])
    np.testing.assert_allclose(result.scores, scores[(30, 3)][test], rtol=1e-5)
    assert set(result.extra["timestep"]) == {30.0} and set(result.extra["num_queries"]) == {3.0}
    assert sorted(result.extra) == ["num_queries", "t200", "t30", "timestep"]
    for i, t in enumerate((30, 200)):
        np.testing.assert_allclose(result.extra[f"t{t}"], -dist[i].mean(axis=0)[test], rtol=1e-5)


def test_recon_refuses_timesteps_outside_the_schedule_naming_its_key(schedule):
    images = torch.zeros(4, 1, 4, 4)
    cfg = AttackConfig(recon=ReconConfig(timesteps=(10, 1000), num_steps=2, train_fraction=0.5))
    with pytest.raises(
        ValueError, match=r"^attack\.recon\.timesteps: timesteps \[1000\] outside \[0, 1000\)"
    ):
        attack_sampler("recon", cfg, sampler=CheckingPredictor(), schedule=schedule, images=images,
                       sample_ids=np.arange(4), is_member=np.array([1, 0, 1, 0]))  # fmt: skip


# --- the deployed interface: an image-to-image query on the sampler's own grid ------------------------------


def deployed(selector, kind, num_train_timesteps, num_inference_steps, **overrides) -> DeployedSampler:
    """`selector` deployed with a fresh `kind` scheduler ("ddim" or "ddpm") on a linear T-step schedule."""
    base = DDPMScheduler(num_train_timesteps=num_train_timesteps)
    scheduler = build_scheduler(kind, base, **overrides)
    return DeployedSampler(selector=selector, scheduler=scheduler, num_inference_steps=num_inference_steps)


def test_strength_maps_to_the_grid_step_of_50_step_ddim():
    """50-step DDIM on T = 1000 ("leading"): step i has timestep 980 - 20 i. Strength s runs k = int(50 s) steps from
    step 50 - k: 1 -> all 50 from 980; 0.5 -> 25 from step 25 (480); 0.1 -> 5 from step 45 (80); 0.05 -> int(2.5) = 2
    from step 48 (20); 0.02 -> the last step alone (timestep 0); 0.01 -> none, refused."""
    sampler = deployed(lambda x, t: x, "ddim", 1000, 50)
    assert sampler.grid() == [980 - 20 * i for i in range(50)]
    assert [sampler.start(s) for s in (1.0, 0.5, 0.1, 0.05, 0.02)] == [
        (0, 980),
        (25, 480),
        (45, 80),
        (48, 20),
        (49, 0),
    ]
    with pytest.raises(ValueError, match=r"strength 0.01 runs no step of the 50-step grid .*1 / 50"):
        sampler.start(0.01)


def test_strength_maps_to_the_grid_step_of_the_1000_step_ancestral_sampler():
    """The paper's sampler: grid 999, 998, ..., 0, so step i has timestep 999 - i; 0.1 runs the last 100 steps from
    99, 0.29 the last 290 from 289, 0.001 only t = 0. The rule is diffusers' int(N s) in float arithmetic: on a
    100-step grid 0.29 runs 28 steps (100 * 0.29 = 28.999999999999996), not 29."""
    sampler = deployed(lambda x, t: x, "ddpm", 1000, 1000)
    assert sampler.grid() == list(range(999, -1, -1))
    assert [sampler.start(s) for s in (1.0, 0.1, 0.29, 0.001)] == [(0, 999), (900, 99), (710, 289), (999, 0)]
    assert img2img_start(0.29, 100) == 72
    with pytest.raises(ValueError, match=r"strength 1.5 is not in \(0, 1\]"):
        img2img_start(1.5, 100)


class RecordingTeacher:
    """A tiny UNet that appends (its name, t) to a shared log at every call."""

    def __init__(self, name, seed, log):
        self.name, self.model, self.log = name, UNetPredictor(tiny_unet(seed)), log

    def __call__(self, x, t):
        assert (t == t[0]).all()
        self.log.append((self.name, int(t[0])))
        return self.model(x, t)


@pytest.mark.parametrize(
    ("kind", "steps", "alternation", "strength", "first"),
    [("ddim", 50, "step_index", 0.1, "teacher2"), ("ddpm", 1000, "timestep_parity", 0.012, "teacher1")],
    ids=["ddim50-step_index", "ddpm1000-timestep_parity"],
)
def test_dualmd_img2img_takes_each_grid_step_with_generations_teacher(
    kind, steps, alternation, strength, first
):
    """Generation with two different teachers logs (teacher, t) at every grid step; an image-to-image query makes
    exactly the calls of the grid's tail. DDIM 0.1 starts at step 45, which step index gives teacher 2 (a query that
    counted its own steps from 0 would start with teacher 1); ancestral 0.012 runs 12 steps from t = 11 of 999, ..., 0,
    odd, so timestep parity gives teacher 1."""
    log = []
    pair = AlternatingTeachers(
        teacher1=RecordingTeacher("teacher1", 1, log), teacher2=RecordingTeacher("teacher2", 2, log),
        alternation=alternation,
    )  # fmt: skip
    sampler = deployed(pair, kind, 1000, steps)
    run_sampler(pair, sampler.scheduler, num_images=1, image_shape=(1, 8, 8), num_inference_steps=steps)
    generation, start = list(log), sampler.start(strength)[0]
    log.clear()
    x_0 = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    out = sampler.img2img(x_0, strength, torch.randn(2, 1, 8, 8), per_sample_generators(0, np.arange(2), 5))
    assert log == generation[start:]
    assert log[0] == (first, sampler.grid()[start]) and len(log) == int(steps * strength)
    assert {name for name, _ in log} == {"teacher1", "teacher2"}
    assert out.shape == (2, 1, 8, 8) and out.abs().max() <= 1


def test_recon_deployed_ddim_with_a_zero_predictor_measures_the_initial_noise(schedule):
    """DDIM (eta 0, no x_0 clipping) with eps_theta = 0 keeps x^_0 = x_t / sqrt(a_t) at every step, so a query from
    start timestep t returns x_0 + sqrt((1 - a_t) / a_t) eps with eps = per_sample_noise(seed, id, (t, j)): the
    distance is sqrt((1 - a_t) / a_t) ||eps||. On 50-step DDIM, strength 0.05 starts at t = 20 and 0.1 at t = 80."""
    gen = torch.Generator().manual_seed(3)
    images = (
        torch.rand(12, 1, 4, 4, generator=gen) - 0.5
    )  # far enough from +-1 that the final clipping is idle
    ids, is_member = np.arange(12) * 3 + 2, np.array([True, False] * 6)
    sampler = deployed(lambda x, t: torch.zeros_like(x), "ddim", 1000, 50, clip_sample=False)
    recon = ReconConfig(interface="deployed", strengths=(0.05, 0.1), num_queries=(2, 1), train_fraction=0.5)
    result = attack_sampler("recon", AttackConfig(seed=7, batch_size=5, recon=recon), sampler=sampler,
                            schedule=schedule, images=images, sample_ids=ids, is_member=is_member)  # fmt: skip
    scores = {}
    for s, t in ((0.05, 20), (0.1, 80)):
        a = float(schedule.alphas_cumprod[t])
        norms = np.stack([per_sample_noise(7, ids, (1, 4, 4), t, j).double().flatten(1).norm(dim=1).numpy()
                          for j in range(2)])  # fmt: skip
        scores |= {(s, q): -(((1 - a) / a) ** 0.5) * norms[:q].mean(axis=0) for q in (1, 2)}
    train, test = train_test_split(is_member, 0.5, "recon")
    chosen = choose_setting({k: v[train] for k, v in scores.items()}, is_member[train])
    np.testing.assert_array_equal(result.sample_ids, ids[test])
    np.testing.assert_allclose(result.scores, scores[chosen][test], rtol=1e-5)
    assert sorted(result.extra) == ["num_queries", "s0.05_q1", "s0.05_q2", "s0.1_q1", "s0.1_q2", "strength",
                                    "timestep"]  # fmt: skip
    for (s, q), values in scores.items():
        np.testing.assert_allclose(result.extra[f"s{s}_q{q}"], values[test], rtol=1e-5)
    assert set(result.extra["strength"]) == {chosen[0]} and set(result.extra["num_queries"]) == {chosen[1]}
    assert set(result.extra["timestep"]) == {20.0 if chosen[0] == 0.05 else 80.0}


def ancestral_np(x_t, t_start, alphas_cumprod, generator):
    """Ho et al.'s Algorithm 2 with eps_theta = 0 from x_t at t_start down to 0, with beta~_t (fixed_small) and no
    x_0 clipping, drawing z (1, C, H, W) from `generator` at every step with t > 0, as diffusers' DDPM step does
    (beta_t = 1 - a_t / a_{t-1}, as diffusers computes it from alpha_bar)."""
    x = x_t.astype(np.float64)
    for t in range(t_start, -1, -1):
        a_t, a_prev = float(alphas_cumprod[t]), float(alphas_cumprod[t - 1]) if t > 0 else 1.0
        beta = 1 - a_t / a_prev
        x0_hat = x / a_t**0.5
        mean = a_prev**0.5 * beta / (1 - a_t) * x0_hat + (1 - beta) ** 0.5 * (1 - a_prev) / (1 - a_t) * x
        if t > 0:
            z = torch.randn((1, *x.shape), generator=generator)[0].double().numpy()
            x = mean + ((1 - a_prev) / (1 - a_t) * beta) ** 0.5 * z
        else:
            x = mean
    return np.clip(x, -1, 1)


def test_recon_deployed_ancestral_draws_fresh_step_noise_per_sample(schedule):
    """The ancestral sampler (here 20 of 20 steps) noises x_0 to the start t with per_sample_noise (t, j) and draws
    every step's noise from the sample's own generator, seeded (seed, id, t, j, 1): the distances equal Algorithm 2
    recomputed with those draws, whatever the batch size, and the two queries differ."""
    base = DDPMScheduler(num_train_timesteps=20)
    short = Schedule.from_scheduler(base)
    images = torch.rand(8, 1, 4, 4, generator=torch.Generator().manual_seed(5)) - 0.5
    ids, is_member = np.arange(8) + 10, np.array([True, False] * 4)
    sampler = deployed(lambda x, t: torch.zeros_like(x), "ddpm", 20, 20, clip_sample=False)
    recon = ReconConfig(interface="deployed", strengths=(0.3,), num_queries=(2,), train_fraction=0.5)
    runs = [
        attack_sampler("recon", AttackConfig(seed=1, batch_size=b, recon=recon), sampler=sampler, schedule=short,
                       images=images, sample_ids=ids, is_member=is_member)
        for b in (3, 8)
    ]  # fmt: skip
    np.testing.assert_array_equal(runs[0].scores, runs[1].scores)
    t, alphas = 5, base.alphas_cumprod.double().numpy()  # 6 steps: 5, ..., 0
    assert sampler.start(0.3) == (14, t)
    dist = np.zeros((2, 8))
    for j in range(2):
        eps = per_sample_noise(1, ids, (1, 4, 4), t, j).double().numpy()
        x_t = alphas[t] ** 0.5 * images.double().numpy() + (1 - alphas[t]) ** 0.5 * eps
        for n, gen in enumerate(per_sample_generators(1, ids, t, j, STEP_NOISE_STREAM)):
            dist[j, n] = np.linalg.norm(ancestral_np(x_t[n], t, alphas, gen) - images[n].double().numpy())
    assert not np.allclose(dist[0], dist[1])  # fresh noise per query
    _, test = train_test_split(is_member, 0.5, "recon")
    np.testing.assert_allclose(runs[0].scores, -dist.mean(axis=0)[test], rtol=1e-5)


def test_recon_deployed_refuses_a_bare_predictor_and_strengths_sharing_a_start(schedule):
    images, ids, is_member = torch.zeros(4, 1, 4, 4), np.arange(4), np.array([1, 0, 1, 0])
    recon = ReconConfig(interface="deployed", strengths=(0.1, 0.11), train_fraction=0.5)
    cfg = AttackConfig(recon=recon)
    with pytest.raises(
        ValueError, match=r"^attack\.recon\.interface: 'deployed' .*DeployedSampler, got CheckingPredictor$"
    ):
        attack_sampler("recon", cfg, sampler=CheckingPredictor(), schedule=schedule, images=images,
                       sample_ids=ids, is_member=is_member)  # fmt: skip
    sampler = deployed(CheckingPredictor(), "ddim", 1000, 50)
    with pytest.raises(ValueError, match=r"^attack\.recon\.strengths: 0.1 and 0.11 both start at step 45 "):
        attack_sampler("recon", cfg, sampler=sampler, schedule=schedule, images=images, sample_ids=ids,
                       is_member=is_member)  # fmt: skip
    small = AttackConfig(recon=ReconConfig(interface="deployed", strengths=(0.01,), train_fraction=0.5))
    with pytest.raises(ValueError, match=r"^attack\.recon\.strengths: strength 0.01 runs no step"):
        attack_sampler("recon", small, sampler=sampler, schedule=schedule, images=images, sample_ids=ids,
                       is_member=is_member)  # fmt: skip


# --- devices, a grid of one, errors that name the attack -------------------------------------------------------


class OnMeta(CheckingPredictor):
    """A predictor that lives on the "meta" device (standing in for a GPU) and records where it is queried."""

    device = "meta"


def test_reconstruct_queries_with_timesteps_on_the_images_device(schedule):
    x_t = torch.zeros(2, 1, 4, 4, device="meta", dtype=torch.float64)
    model = CheckingPredictor()  # refuses timesteps on another device than its input
    out = reconstruct(model, schedule, x_t, 90, 3)
    assert out.device.type == "meta" and out.shape == x_t.shape
    assert [t.device.type for _, t in model.calls] == ["meta"] * 3


def test_recon_chain_queries_the_predictor_on_its_own_device(schedule):
    """Images on the CPU, the predictor on "meta": images and noise are moved to the predictor's device (the
    distances then cannot be read back from "meta", which holds no numbers)."""
    images = torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(4)) * 2 - 1
    attack = build_attack(
        "recon", AttackConfig(batch_size=2, recon=ReconConfig(timesteps=(30, 60), num_steps=2))
    )
    model = OnMeta()
    with pytest.raises((NotImplementedError, RuntimeError)):
        attack.distances(model, schedule, images, np.arange(3))
    assert model.calls and all(x.device.type == "meta" for x, _ in model.calls)


def test_recon_chain_noise_follows_images_on_another_device(schedule):
    """A predictor without a device of its own computes where the images are: the noise is moved there too."""
    attack = build_attack("recon", AttackConfig(recon=ReconConfig(timesteps=(30,), num_steps=2)))
    model = CheckingPredictor()
    with pytest.raises((NotImplementedError, RuntimeError)):
        attack.distances(model, schedule, torch.zeros(2, 1, 4, 4, device="meta"), np.arange(2))
    assert model.calls and all(x.device.type == "meta" for x, _ in model.calls)


def test_recon_deployed_queries_the_sampler_on_its_predictors_device(schedule):
    images = torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(4)) * 2 - 1
    recon = ReconConfig(interface="deployed", strengths=(0.1,), num_queries=(1,))
    attack = build_attack("recon", AttackConfig(batch_size=2, recon=recon))
    model = OnMeta()
    with pytest.raises((NotImplementedError, RuntimeError)):
        attack.deployed_distances(deployed(model, "ddim", 1000, 50), images, np.arange(3))
    assert model.calls and all(x.device.type == "meta" for x, _ in model.calls)


def test_recon_chain_with_a_single_timestep_measures_what_it_measures_among_others(schedule):
    images = torch.rand(4, 1, 4, 4, generator=torch.Generator().manual_seed(2)) * 2 - 1
    ids = np.arange(4) + 3

    def distances(timesteps):
        cfg = AttackConfig(seed=5, recon=ReconConfig(timesteps=timesteps, num_steps=2, num_queries=(2,)))
        return build_attack("recon", cfg).distances(CheckingPredictor(), schedule, images, ids)

    one, two = distances((30,)), distances((60, 30))
    assert one.shape == (1, 2, 4)
    np.testing.assert_array_equal(one[0], two[1])


def test_recon_deployed_on_a_one_step_grid(schedule):
    """1-step DDIM on T = 1000: the grid is [0]; strength 1 runs it. With eps_theta = 0 the query returns
    x_0 + sqrt((1 - a_0) / a_0) eps, so the distance is sqrt((1 - a_0) / a_0) ||eps||."""
    images = torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(3)) - 0.5
    ids = np.arange(3) * 2
    sampler = deployed(lambda x, t: torch.zeros_like(x), "ddim", 1000, 1, clip_sample=False)
    assert sampler.grid() == [0]
    recon = ReconConfig(interface="deployed", strengths=(1.0,), num_queries=(2,))
    dist = build_attack("recon", AttackConfig(seed=3, recon=recon)).deployed_distances(sampler, images, ids)
    a = float(schedule.alphas_cumprod[0])
    norms = [
        per_sample_noise(3, ids, (1, 4, 4), 0, j).double().flatten(1).norm(dim=1).numpy() for j in (0, 1)
    ]
    np.testing.assert_allclose(dist[0], ((1 - a) / a) ** 0.5 * np.stack(norms), rtol=1e-4)


def test_recon_chain_through_a_deployed_sampler_queries_its_predictor(schedule):
    """The chain interface handed the deployed sampler runs its own chain through the sampler's selector."""
    images = torch.rand(8, 1, 4, 4, generator=torch.Generator().manual_seed(6)) * 2 - 1
    common = dict(
        schedule=schedule, images=images, sample_ids=np.arange(8), is_member=np.array([True, False] * 4)
    )
    cfg = AttackConfig(recon=ReconConfig(timesteps=(30, 60), num_steps=2, train_fraction=0.5))
    bare = attack_sampler("recon", cfg, sampler=CheckingPredictor(), **common)
    through = attack_sampler("recon", cfg, sampler=deployed(CheckingPredictor(), "ddim", 1000, 50), **common)
    np.testing.assert_array_equal(through.scores, bare.scores)


def test_recon_refuses_a_slice_that_leaves_a_class_empty_naming_itself(schedule):
    cfg = AttackConfig(recon=ReconConfig(timesteps=(30,), num_steps=2))
    with pytest.raises(ValueError, match=r"^recon: train_fraction=0\.2 leaves an empty training or test set"):
        attack_sampler("recon", cfg, sampler=CheckingPredictor(), schedule=schedule, images=torch.zeros(4, 1, 4, 4),
                       sample_ids=np.arange(4), is_member=np.array([1, 0, 1, 0]))  # fmt: skip
