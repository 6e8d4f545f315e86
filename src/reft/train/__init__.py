"""Trainers: SFT (warm-up, SFT baseline, offline self-training), ReFT (PPO), online self-training.

They share one run scaffold (`loop.TrainingRun`): model loading, optimizer and schedule, the
accelerate wrapper, metrics, dev evaluation, checkpoints and resume.
"""
