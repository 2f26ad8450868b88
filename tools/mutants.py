"""The mutants of tools/mutate.py: one known bug each, planted by replacing a snippet of a script.

Each `old` is a verbatim piece of the script's code (not of a comment) that occurs exactly once in it;
tools/mutate.py refuses to run while one does not (a stale mutant, after the script changed). A mutant
marked `equivalent` changes nothing that a test could observe: it is run all the same, and expected to
survive. Details are numbered as in the tables of docs/*.md (core 1-13, atari 1-9, continuous 1-9). The copies
of ppo_atari.py (ppo_atari_ale_vector.py, ppo_atari_multigpu.py) get the mutants of the details whose code
they hold and the tests parametrized over them can see, and those of their own changes.
"""

from dataclasses import dataclass

P, C, A, R = "ppo.py", "ppo_continuous_action.py", "ppo_atari.py", "ppo_run.py"
V, M = "ppo_atari_ale_vector.py", "ppo_atari_multigpu.py"  # the copies of ppo_atari.py with a variant's changes
PREFIX = {P: "ppo", C: "continuous", A: "atari", V: "atari-ale-vector", M: "atari-multigpu", R: "run"}


@dataclass(frozen=True)
class Mutant:
    name: str  # short unique id, "<script>/<what>"
    script: str  # the file mutated
    old: str  # the snippet replaced (exactly once in the script)
    new: str  # its replacement
    detail: str  # the detail it breaks
    equivalent: str | None = None  # why no test can observe it (then it is expected to survive)


MUTANTS: list[Mutant] = []


def add(scripts: str, what: str, old: str, new: str, detail: str, equivalent: str | None = None) -> None:
    """One mutant per script in `scripts` (a string of P, C, A, V, M names joined by spaces)."""
    for script in scripts.split():
        MUTANTS.append(Mutant(f"{PREFIX[script]}/{what}", script, old, new, detail, equivalent))


PC, ATARI = f"{P} {C}", f"{A} {V} {M}"  # ATARI: ppo_atari.py and its copies
ALL = f"{PC} {ATARI}"

# (one mutant per call, laid out by hand)
# fmt: off

# ---- core 1-13 ---------------------------------------------------------------------------------------
add(PC, "one-env", "for i in range(num_envs)],", "for i in range(1)],", "core 1: one env instead of --num-envs")
add(A, "one-env-gymnasium", "[lambda i=i: env_fn(i) for i in range(num_envs)],",
    "[lambda i=i: env_fn(i) for i in range(1)],", "core 1: one env instead of --num-envs (gymnasium's vector env)")

add(P, "policy-gain", "mlp(obs_dim, n_actions, 0.01)", "mlp(obs_dim, n_actions, 1.0)", "core 2: policy head gain 0.01 -> 1")
add(C, "policy-gain", "mlp(obs_dim, action_dim, 0.01, actor_width)", "mlp(obs_dim, action_dim, 1.0, actor_width)",
    "core 2: policy head gain 0.01 -> 1")
add(ATARI, "policy-gain", "layer_init(nn.Linear(512, n_actions), std=0.01)", "layer_init(nn.Linear(512, n_actions), std=1.0)",
    "core 2: policy head gain 0.01 -> 1")
add(P, "value-gain", "mlp(obs_dim, 1, 1.0)", "mlp(obs_dim, 1, 0.01)", "core 2: value head gain 1 -> 0.01")
add(C, "value-gain", "mlp(obs_dim, 1, 1.0, critic_width)", "mlp(obs_dim, 1, 0.01, critic_width)",
    "core 2: value head gain 1 -> 0.01")
add(P, "hidden-gain", "layer_init(nn.Linear(64, 64)), nn.Tanh()]", "layer_init(nn.Linear(64, 64), std=1.0), nn.Tanh()]",
    "core 2: hidden layer gain sqrt(2) -> 1")
add(C, "hidden-gain", "layer_init(nn.Linear(width, width)), nn.Tanh()]",
    "layer_init(nn.Linear(width, width), std=1.0), nn.Tanh()]", "core 2: hidden layer gain sqrt(2) -> 1")
add(ATARI, "value-gain", "layer_init(nn.Linear(512, 1), std=1.0)", "layer_init(nn.Linear(512, 1), std=0.01)",
    "core 2: value head gain 1 -> 0.01")
add(ALL, "bias", "torch.nn.init.constant_(layer.bias, bias_const)", "torch.nn.init.constant_(layer.bias, 0.1)",
    "core 2: zero biases -> 0.1")

add(ALL, "adam-eps", "eps=1e-5, fused=True", "eps=1e-8, fused=True", "core 3: Adam epsilon 1e-5 -> 1e-8")

add(f"{P} {ATARI}", "no-lr-anneal", 'optimizer.param_groups[0]["lr"] = frac * args.learning_rate',
    'optimizer.param_groups[0]["lr"] = args.learning_rate', "core 4: learning rate not annealed")
add(C, "no-lr-anneal", 'group["lr"] = frac * group["initial_lr"]', 'group["lr"] = group["initial_lr"]',
    "core 4: learning rate(s) not annealed")

add(ALL, "gae-no-lambda", "gamma * gae_lambda * continues[t] * last_advantage", "gamma * continues[t] * last_advantage",
    "core 5: lambda dropped from the GAE recursion")
add(ALL, "gae-bootstrap-termination", "gamma * next_values * (1.0 - terminations) - values",
    "gamma * next_values - values", "core 5: the next value bootstrapped through a termination")

add(PC, "no-shuffle", "permutation = torch.randperm(args.batch_size)", "permutation = torch.arange(args.batch_size)",
    "core 6: minibatches not shuffled")
add(PC, "shuffle-once", "permutation = torch.randperm(args.batch_size)",
    "permutation = permutation if epoch else torch.randperm(args.batch_size)",
    "core 6: the batch shuffled once, not every epoch")
add(ATARI, "no-shuffle", "permutation = torch.randperm(args.batch_size, device=device)",
    "permutation = torch.arange(args.batch_size, device=device)", "core 6: minibatches not shuffled")
add(ATARI, "shuffle-once", "permutation = torch.randperm(args.batch_size, device=device)",
    "permutation = permutation if epoch else torch.randperm(args.batch_size, device=device)",
    "core 6: the batch shuffled once, not every epoch")

add(ALL, "no-adv-norm", "if args.norm_adv:", "if False:", "core 7: advantages not normalized")
add(f"{PC} {A} {V}", "adv-norm-batch", "mb_advantages.mean(1, keepdim=True), mb_advantages.std(1, keepdim=True)",
    "mb_advantages.mean(), mb_advantages.std()", "core 7: advantages normalized over the whole batch, not per minibatch")
add(M, "adv-norm-batch", "whole.mean(1, keepdim=True), whole.std(1, keepdim=True)", "whole.mean(), whole.std()",
    "core 7: advantages normalized over the whole batch, not per minibatch")

add(ALL, "pg-min", "return torch.max(-advantages * ratio, clipped).mean()", "return torch.min(-advantages * ratio, clipped).mean()",
    "core 8: min instead of max of the negated surrogates")
add(ALL, "clip-range", "torch.clamp(ratio, 1 - clip_coef, 1 + clip_coef)",
    "torch.clamp(ratio, 1 - clip_coef, 1 + 2 * clip_coef)", "core 8: clip range [1 - eps, 1 + 2 eps]")

add(ALL, "no-vclip", "if not clip:", "if True:", "core 9: value clipping ignored (--clip-vloss does nothing)")
add(ALL, "vclip-min", "torch.max((new_values - returns) ** 2, (clipped_values - returns) ** 2)",
    "torch.min((new_values - returns) ** 2, (clipped_values - returns) ** 2)",
    "core 9: min instead of max of the clipped and unclipped value losses")

add(f"{P} {ATARI}", "entropy-sign", "loss = pg_loss - args.ent_coef * entropy_loss + v_loss * args.vf_coef",
    "loss = pg_loss + args.ent_coef * entropy_loss + v_loss * args.vf_coef", "core 10: entropy bonus sign flipped")
add(f"{P} {ATARI}", "no-vf-coef", "loss = pg_loss - args.ent_coef * entropy_loss + v_loss * args.vf_coef",
    "loss = pg_loss - args.ent_coef * entropy_loss + v_loss", "core 10: vf_coef ignored")
add(C, "entropy-sign", "loss = loss - args.ent_coef * entropy_loss", "loss = loss + args.ent_coef * entropy_loss",
    "core 10: entropy bonus sign flipped")
add(C, "no-vf-coef", "loss = pg_loss + v_loss * args.vf_coef", "loss = pg_loss + v_loss", "core 10: vf_coef ignored")
add(C, "entropy-guard", "if args.ent_coef != 0:", "if True:", "core 10: the skip of a zero entropy bonus removed",
    "with ent_coef 0 the term subtracts exactly 0 from the loss and from every gradient; otherwise both run it")

add(ALL, "no-grad-clip", "scale = (args.max_grad_norm / (grad_norm + 1e-6)).clamp(max=1.0)",
    "scale = (math.inf / (grad_norm + 1e-6)).clamp(max=1.0)", "core 11: no gradient clipping")
add(PC, "grad-clip-per-tensor", "grad_norm = torch.cat([p.grad.reshape(-1) for p in params]).norm()",
    "grad_norm = params[-1].grad.norm()", "core 11: the norm of one tensor's gradient, not the global norm")
add(ATARI, "grad-clip-per-tensor", "grad_norm = torch.stack([p.grad.norm() for p in params]).norm()",
    "grad_norm = params[-1].grad.norm()", "core 11: the norm of one tensor's gradient, not the global norm")

add(ALL, "approx-kl", "approx_kl = (logratios[-1].exp() - 1 - logratios[-1]).mean()",
    "approx_kl = (-logratios[-1]).mean()", "core 12: approx_kl is the old estimator -log ratio")
add(ALL, "clipfrac", "((torch.cat(logratios).exp() - 1.0).abs() > clip_coef)",
    "((torch.cat(logratios).exp() - 1.0) > clip_coef)", "core 12: clip fraction counts ratios above the range only")
add(ALL, "explained-variance", "float(1 - np.var(y_true - y_pred) / var_y)", "float(1 - np.var(y_pred) / var_y)",
    "core 12: explained variance from var(prediction), not var(residual)")

add(P, "shared-trunk", "return self.critic(obs).squeeze(-1)", "return self.critic[2:](self.actor[:2](obs)).squeeze(-1)",
    "core 13: the critic reads the actor's first layer (not separate networks)")
add(C, "shared-trunk", "return self.critic(obs).squeeze(-1)",
    "return self.critic[2:](self.actor_mean[:2](obs)).squeeze(-1)",
    "core 13, continuous 4: the critic reads the actor's first layer (not separate networks)")
add(A, "game-length-in-steps", "env = RecordGameStatistics(env)  # the real, full-game score and length in frames, for the logs\n"
    "    env = NoopResetEnv(env, noop_max)  # (atari 1)\n    env = MaxAndSkipEnv(env, skip=4)  # (atari 2)",
    "env = NoopResetEnv(env, noop_max)\n    env = MaxAndSkipEnv(env, skip=4)\n    env = RecordGameStatistics(env)",
    "atari: game statistics above max-and-skip (lengths in agent steps, not CleanRL's frames)")
add(V, "game-length-in-steps-ale", "lengths = game_start - self.game_start", "lengths = (game_start - self.game_start) // 4",
    "atari: the C++ env's game lengths in agent steps, not frames")
add(A, "no-channels-last", "return agent.to(memory_format=torch.channels_last) if args.channels_last else agent",
    "return agent", "speed: the default CNN in the slow NCHW layout")
add(A, "bf16-ignored", "enabled=self.bf16)", "enabled=False)", "speed: --bf16 does nothing")
add(A, "bf16-heads", "return self.network(pixels).float()", "return self.network(pixels)", "bf16: heads and losses in bfloat16 too")
add(A, "bf16-unchecked", "if args.bf16 and not native_bf16(args.cuda):", "if False:", "bf16: emulated bf16 not refused")
add(ATARI, "cnn-tanh", "layer_init(nn.Conv2d(64, 64, 3, stride=1)), nn.ReLU(),",
    "layer_init(nn.Conv2d(64, 64, 3, stride=1)), nn.Tanh(),", "core 13, atari 8: a tanh in the Nature-CNN")

# ---- gymnasium 1.x handling ----------------------------------------------------------------------------
add(f"{PC} {A}", "next-step-autoreset", "autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,",
    "autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP,",
    "gymnasium 1.x: NEXT_STEP autoreset (bogus autoreset steps in the batch)")
add(V, "next-step-autoreset-ale", "autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,  # as ppo_atari.py",
    "autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP,  # as ppo_atari.py",
    "gymnasium 1.x: NEXT_STEP autoreset (the C++ env)")
add(ALL, "terminated-and-truncated", "truncated = truncated & ~terminated", "truncated = truncated",
    "gymnasium 1.x: a step that terminates and truncates kept as a truncation")
add(P, "truncation-next-obs", 'policy.value(np.stack(infos["final_obs"][truncated]))', "policy.value(next_obs[truncated])",
    "gymnasium 1.x: truncation value from the next episode's first observation, not final_obs")
add(C, "truncation-next-obs", 'agent.normalize_obs(np.stack(infos["final_obs"][truncated]), update=False)',
    "next_obs[truncated]",
    "gymnasium 1.x: truncation value from the next episode's first observation, not final_obs")
add(f"{A} {V}", "truncation-next-obs", 'torch.from_numpy(np.stack(infos["final_obs"][truncated])).to(buf.obs.device)',
    "torch.from_numpy(next_obs[truncated]).to(buf.obs.device)",
    "gymnasium 1.x: truncation value from the next game's first observation, not final_obs")
add(ALL, "truncation-not-bootstrapped", "next_values = np.where(truncations > 0, truncation_values, next_values)",
    "next_values = np.where(truncations > 0, 0.0, next_values)",
    "gymnasium 1.x: truncations not bootstrapped (truncation_values ignored)")

# ---- the loss types (their runs are tested on ppo.py, ppo_continuous_action.py, ppo_atari.py; their functions on all)
add(f"{PC} {A}", "pg-is-clip", "pg_loss = surrogate_loss(mb_advantages[i], ratio)",
    "pg_loss = clipped_policy_loss(mb_advantages[i], ratio, clip_coef)", "loss types: pg runs the clipped loss")
add(f"{PC} {A}", "kl-penalty-is-clip", "pg_loss = kl_penalty_loss(mb_advantages[i], ratio, logratio, kl_beta)",
    "pg_loss = clipped_policy_loss(mb_advantages[i], ratio, clip_coef)", "loss types: kl-penalty runs the clipped loss")
add(ALL, "kl-penalty-no-beta", "return surrogate_loss(advantages, ratio) + beta * ((ratio - 1) - logratio).mean()",
    "return surrogate_loss(advantages, ratio)", "loss types: kl-penalty without its beta * KL term")
add(ALL, "kl-beta-swapped", "return beta / 2\n    if kl > target * 1.5:\n        return beta * 2",
    "return beta * 2\n    if kl > target * 1.5:\n        return beta / 2",
    "loss types: beta doubled below the band, halved above")
add(ALL, "kl-beta-band", "if kl < target / 1.5:\n        return beta / 2\n    if kl > target * 1.5:",
    "if kl < target / 2:\n        return beta / 2\n    if kl > target * 2:",
    "loss types: beta band edges target/2, target*2")
add(PC, "kl-beta-not-saved", "policy_rng=policy.rng, kl_beta=kl_beta",
    "policy_rng=policy.rng, kl_beta=args.kl_beta",
    "loss types: the adapted kl_beta not saved in the checkpoint")
add(A, "kl-beta-not-saved", "optimizer, kl_beta=kl_beta)", "optimizer, kl_beta=args.kl_beta)",
    "loss types: the adapted kl_beta not saved in the checkpoint")
add(f"{PC} {A}", "kl-beta-not-restored", 'kl_beta = run.checkpoint.get("kl_beta", args.kl_beta)', "kl_beta = args.kl_beta",
    "loss types: kl_beta not restored from the checkpoint")

# ---- resume ------------------------------------------------------------------------------------------------
add(ALL, "resume-no-weights", 'agent.load_state_dict(run.checkpoint["agent"])\n        optimizer.load_state_dict',
    "optimizer.load_state_dict", "resume: the weights not loaded")
add(ALL, "resume-no-optimizer", 'optimizer.load_state_dict(run.checkpoint["optimizer"])', "pass",
    "resume: the optimizer state not loaded")
add(C, "resume-no-obs-rms", 'agent.load_state_dict(run.checkpoint["agent"])\n        optimizer',
    'agent.load_state_dict({k: v for k, v in run.checkpoint["agent"].items() if not k.startswith("obs_rms.")}, '
    "strict=False)\n        optimizer", "resume, continuous 6: the observation statistics not loaded")
add(C, "resume-no-return-rms", 'agent.load_state_dict(run.checkpoint["agent"])\n        optimizer',
    'agent.load_state_dict({k: v for k, v in run.checkpoint["agent"].items() if not k.startswith("return_rms.")}, '
    "strict=False)\n        optimizer", "resume, continuous 8: the return statistics not loaded")



add(A, "async-main-ignores-signals", "if os.getpid() != main_pid:", "if True:",
    "interruption: with --gym-vector async the main process ignores Ctrl-C too (env 0 is built there once)")

# ---- evaluation ----------------------------------------------------------------------------------------------
add(C, "eval-updates-stats", "self.normalize_obs(obs[None], update=False)", "self.normalize_obs(obs[None], update=True)",
    "evaluation, continuous 6: the statistics updated while evaluating, not frozen")

# ---- continuous 1-9 ------------------------------------------------------------------------------------------
add(C, "sample-no-mean", "action = mean + np.exp(self.logstd) * noise", "action = np.exp(self.logstd) * noise",
    "continuous 1: the rollout's actions ignore the actor's mean")
add(C, "logstd-not-learned", "self.actor_logstd = nn.Parameter(torch.full((1, action_dim), float(init_logstd)))",
    'self.register_buffer("actor_logstd", torch.full((1, action_dim), float(init_logstd)))',
    "continuous 2: the log-std not learned")
add(C, "logprob-mean", "((action - mean) * torch.exp(-logstd)).square().sum(-1)",
    "((action - mean) * torch.exp(-logstd)).square().mean(-1)",
    "continuous 3: log-probability averaged over the action dimensions, not summed")
add(C, "clipped-action-stored", "action, logprob = policy.act(next_obs)",
    "action, logprob = policy.act(next_obs)\n        action = np.clip(action, -1.0, 1.0)", "continuous 5: the clipped action stored")
add(C, "env-gets-unclipped-action", "env = gym.wrappers.ClipAction(env)", "env = env",
    "continuous 5: the env's copy of the action not clipped")
add(C, "obs-stats-frozen", "next_obs, reward = agent.normalize_obs(next_obs, update=True)",
    "next_obs, reward = agent.normalize_obs(next_obs, update=False)", "continuous 6: the statistics not updated in rollouts")
add(C, "final-obs-updates-stats", 'np.stack(infos["final_obs"][truncated]), update=False)',
    'np.stack(infos["final_obs"][truncated]), update=True)',
    "continuous 6: a truncated episode's final observation added to the statistics")
add(C, "obs-stats-var", "var[...] = (var * count + (diff * (batch - mean)).sum(0)) / total",
    "var[...] = (var * count + (diff * diff).sum(0)) / total",
    "continuous 6: running variance merged with the old mean only")
add(C, "no-obs-clip", "return np.minimum(np.maximum(normalized, -10.0), 10.0).astype(np.float32)",
    "return normalized.astype(np.float32)", "continuous 7: no observation clipping")
add(C, "return-never-reset", "self.returns[episode_ended] = 0.0", "pass",
    "continuous 8: the discounted return never reset")
add(C, "return-reset-at-terminations", "reward_scaler(reward, terminated | truncated)",
    "reward_scaler(reward, terminated)", "continuous 8: the discounted return reset at terminations only")
add(C, "reward-scale-var", "return x / np.sqrt(self.views[1] + 1e-8)", "return x / (self.views[1] + 1e-8)",
    "continuous 8: rewards scaled by the variance, not the std")
add(C, "no-reward-clip", "return np.minimum(np.maximum(scaled, -10.0), 10.0)", "return scaled",
    "continuous 9: no reward clipping")

# ---- continuous: the tuned recipe's options (issue 16) ------------------------------------------------------
add(C, "init-logstd-ignored", "torch.full((1, action_dim), float(init_logstd))", "torch.zeros(1, action_dim)",
    "--init-logstd: the log std starts at 0 whatever the flag")
add(C, "widths-swapped", "args.actor_width, args.critic_width)", "args.critic_width, args.actor_width)",
    "--actor-width/--critic-width: each network gets the other's width")
add(C, "recompute-never", "if recompute is not None and epoch > 0:", "if False:",
    "--recompute-adv: the advantages of the rollout kept for every epoch")
add(C, "recompute-not-truncation-values", "buf.truncation_values[truncated] = policy.value(buf.final_obs[truncated])",
    "pass", "--recompute-adv: the cut episodes' final values left as the rollout's")
add(C, "final-obs-not-kept", "buf.final_obs[step, truncated], buf.truncation_values[step, truncated] = final_obs, ",
    "buf.truncation_values[step, truncated] = ", "--recompute-adv: the cut episodes' final observations not kept")
add(C, "recompute-old-value-anchor", "        buf.values[:] = policy.value(buf.obs.reshape((-1,) + buf.obs.shape[2:]))",
    "        buf.values = policy.value(buf.obs.reshape((-1,) + buf.obs.shape[2:]))",
    "--recompute-adv: new values bound to a new array, the update's view (value clipping) keeps the rollout's")
add(C, "recompute-flag-unwired", "if args.recompute_adv else None", "if False else None",
    "--recompute-adv: train never passes the recompute")

# ---- atari 1-9, ppo_atari.py's gymnasium wrappers (wrap_atari and its wrappers) -------------------------------------
add(A, "no-noop-reset", "env = NoopResetEnv(env, noop_max)", "env = env", "atari 1: no-op reset removed (gymnasium)")
add(A, "skip-last-frame", "return self.frames.max(axis=0), total_reward", "return self.frames[1], total_reward",
    "atari 2: the last frame, not the max of the last two (gymnasium)")
add(A, "skip-last-reward", "total_reward += reward", "total_reward = reward",
    "atari 2: the last frame's reward, not the sum of four (gymnasium)")
add(A, "no-episodic-life", "env = EpisodicLifeEnv(env)", "env = env", "atari 3: episodic life removed (gymnasium)")
add(A, "lost-life-resets-game", "if self.game_over:\n            obs, info = self.env.reset(**kwargs)",
    "if True:\n            obs, info = self.env.reset(**kwargs)", "atari 3: a lost life resets the whole game (gymnasium)")
add(A, "no-fire-reset", "env = FireResetEnv(env)", "env = env", "atari 4: fire reset removed (gymnasium)")
add(A, "warp-linear", "interpolation=cv2.INTER_AREA", "interpolation=cv2.INTER_LINEAR",
    "atari 5: bilinear resize instead of area averaging (gymnasium)")
add(A, "no-reward-clip", "env = ClipRewardEnv(env)", "env = env", "atari 6: reward clipping removed (gymnasium)")
add(A, "clipped-score-logged", "    env = RecordGameStatistics(env)",
    "    env = ClipRewardEnv(env)\n    env = RecordGameStatistics(env)",
    "atari 6: rewards clipped below the game statistics, so the clipped score is logged (gymnasium)")
add(A, "reward-clip-to-range", "return float(np.sign(reward))", "return float(np.clip(reward, -1.0, 1.0))",
    "atari 6: rewards clipped to [-1, 1] instead of their sign (gymnasium)",
    "ALE rewards are integers (and so are their sums over skipped frames): for them the clip is the sign")
add(A, "frame-stack-newest-first", "return gym.wrappers.FrameStackObservation(env, 4)",
    "return gym.wrappers.TransformObservation(gym.wrappers.FrameStackObservation(env, 4), "
    "lambda obs: np.ascontiguousarray(obs[::-1]), None)", "atari 7: frame stack newest first (gymnasium)")
add(ATARI, "no-pixel-scaling", "pixels = obs.float() / 255.0", "pixels = obs.float()",
    "atari 9: pixels not scaled to [0, 1]")

# ---- atari 1-7, ppo_atari_ale_vector.py's C++ env (make_ale_vector_env, make_envs) ------------------------------
add(V, "ale-noop-max-0", "noop_max=noop_max,", "noop_max=0,", "atari 1: noop_max 0 (the C++ env)")
add(V, "ale-no-maxpool", "maxpool=True,", "maxpool=False,", "atari 2: no max of the last two frames (the C++ env)")
add(V, "ale-no-life-loss", "life_loss_info=True,", "life_loss_info=False,", "atari 3: no episode end at a lost life (the C++ env)")
add(V, "ale-no-fire-reset", "use_fire_reset=fire_reset,", "use_fire_reset=False,", "atari 4: no fire reset (the C++ env)")
add(V, "ale-color", "grayscale=True,", "grayscale=False,", "atari 5: colour frames, not grayscale (the C++ env)")
add(V, "ale-no-reward-clip", "return VectorClipReward(AleVectorGameStatistics(make_ale_vector_env(env_id, num_envs, ale_threads)))",
    "return AleVectorGameStatistics(make_ale_vector_env(env_id, num_envs, ale_threads))",
    "atari 6: reward clipping removed (the C++ env)")
add(V, "ale-clipped-score-logged",
    "return VectorClipReward(AleVectorGameStatistics(make_ale_vector_env(env_id, num_envs, ale_threads)))",
    "return AleVectorGameStatistics(VectorClipReward(make_ale_vector_env(env_id, num_envs, ale_threads)))",
    "atari 6: wrappers swapped, so the clipped score is logged (the C++ env)")
add(V, "ale-stack-2", "stack_num=4,", "stack_num=2,", "atari 7: a stack of 2 frames, not 4 (the C++ env)")

# ---- the mends of resume, videos, evaluation and the flat parameters ------------------------------------------
add(C, "return-never-reset-call-site", "reward_scaler(reward, terminated | truncated)",
    "reward_scaler(reward, terminated & False)", "continuous 8: the discounted return never reset (at the call site)")

# ---- ppo_atari_multigpu.py's torchrun changes ------------------------------------------------------------------
add(M, "torchrun-no-allreduce", "loss = average_gradients(agent, loss, world_size)", "loss = loss",
    "torchrun: the gradients not averaged over the ranks (each rank steps on its own share)")
add(M, "torchrun-sum-not-mean", "tensor /= world_size", "tensor /= 1",
    "torchrun: the gradients summed over the ranks, not averaged")
add(M, "torchrun-adv-norm-per-rank", "whole = whole_minibatches(mb_advantages, world_size)", "whole = mb_advantages",
    "torchrun, core 7: advantages normalized over each rank's share, not the whole minibatch")
add(M, "torchrun-kl-per-rank", "            all_reduce_mean(approx_kl, world_size)\n", "            pass\n",
    "torchrun: the KL estimate (target-KL stopping) of each rank's share, so that ranks may stop apart")
add(M, "torchrun-epoch-kl-per-rank", "            all_reduce_mean(epoch_kl, world_size)\n", "            pass\n",
    "torchrun: the kl-penalty's epoch KL of each rank's share, so that the ranks' betas drift apart")
add(M, "torchrun-no-broadcast",
    "flat_collective([p.detach() for p in agent.parameters()], lambda flat: torch.distributed.broadcast(flat, 0))",
    "pass", "torchrun: the ranks start from their own initial weights (seeded apart), not rank 0's")
add(M, "torchrun-env-seeds-not-apart", "envs.reset(seed=args.seed + done_iterations + rank * share.num_envs)",
    "envs.reset(seed=args.seed + done_iterations)", "torchrun: every rank's envs seeded alike (the same games)")
add(M, "torchrun-episodes-not-gathered", "episodes = gather_episodes(episodes, rank * share.num_envs, world_size)",
    "episodes = episodes", "torchrun: only rank 0's episodes reach the log")
add(M, "torchrun-steps-of-one-rank", "global_step += args.batch_size", "global_step += share.batch_size",
    "torchrun: the steps (and SPS) of one rank, not of all")
# ---- the run module (ppo_run.py): resume, checkpoints, logging, evaluation, torchrun's rank 0 --------------------
add(R, "resume-no-torch-rng", 'torch.set_rng_state(rng["torch"])', "pass", "resume: torch's RNG not restored")
add(R, "resume-no-policy-rng", 'policy_rng.bit_generator.state = rng["policy"]', "pass",
    "resume: the rollout policy's RNG not restored")
add(R, "resume-no-cuda-rng", 'if "cuda" in rng and torch.cuda.is_initialized():', "if False:",
    "resume: the CUDA RNG not restored", "the tests run on the CPU, where no CUDA RNG is saved or used")
add(R, "resume-no-iteration", 'self.done_iterations = self.checkpoint["iteration"] if self.checkpoint else 0',
    "self.done_iterations = 0", "resume: done_iterations not taken from the checkpoint (learning-rate position lost)")
add(R, "save-fresh-optimizer", "optimizer=optimizer.state_dict(),",
    'optimizer={"state": {}, "param_groups": optimizer.state_dict()["param_groups"]},',
    "resume (save side): a fresh optimizer's state saved (no Adam moments)")
add(R, "no-episodes-logged", 'ended = np.flatnonzero(final["_episode"]) if "_episode" in final else []', "ended = []",
    "logging: the episodes that ended are not reported (charts/episodic_return empty)")
add(R, "eval-checkpoint-unchecked", "            check_numbers(script, args)\n            path, checkpoint = load_checkpoint(",
    "            path, checkpoint = load_checkpoint(", "evaluation: --eval-checkpoint takes numbers out of their range")
add(R, "eval-seeds", "env.reset(seed=EVAL_SEEDS + seed + episode)", "env.reset(seed=seed + episode)",
    "evaluation: episodes seeded like training's resets (EVAL_SEEDS dropped)")
add(R, "recipe-ignored", "return script.Args(**script.RECIPES.get(name, {}))", "return script.Args()",
    "--recipe: the recipe's defaults not applied")
add(R, "resume-drops-named-flags", "given_flags(script, sys.argv[1:]))", "None)",
    "resume: a flag named with its default value dropped")
add(R, "resume-overwrites-videos",
    'self.video_prefix = f"rl-video-from-step-{self.global_step}" if self.checkpoint else "rl-video"',
    'self.video_prefix = "rl-video"', "resume: a resumed run's videos overwrite the stopped run's")
add(R, "stop-at-step-ignored", "paused = 0 < self.args.stop_at_step <= global_step and not last", "paused = False",
    "--stop-at-step: the run goes on past the step")
add(R, "torchrun-torch-seeds-not-apart", "torch.manual_seed(args.seed + rank)", "torch.manual_seed(args.seed)",
    "torchrun: every rank's torch stream alike (the same action samples)")
add(R, "torchrun-every-rank-writes", "self.main = rank == 0", "self.main = True",
    "torchrun: every rank writes a run directory, log, checkpoints and a progress bar")
add(R, "torchrun-every-rank-saves", "if self.args.save_model and self.main and (", "if self.args.save_model and (",
    "torchrun: every rank writes the checkpoint (the same file)")
add(M, "torchrun-signal-not-agreed", "            self.signal = int(got) or None\n", "            pass\n",
    "torchrun: a signal to one rank stops that rank alone (the others lose it)")
# fmt: on
