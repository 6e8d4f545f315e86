"""`reft demo`: the paper's comparison end to end on the built-in synthetic task, at laptop scale.

config.py   what a demo run is made of (task, model, per-stage settings, seeds)
stages.py   the stage graph: warm-up -> ReFT / SFT / offline and online self-training -> reward model
            -> test evaluation, each stage one ordinary `reft` command
runner.py   runs the stages as processes, several at once, with a live progress display
launch.py   starts one stage: forked from a server that has imported torch (or `python -m reft`)
report.py   results.json, report.md and the PNG figures
"""
