"""The text-to-image and diffusion family, on ppdiffusers: a package of small
modules that the diffusion papers and their two commands use. The harness core
(repro.train, repro.verify, repro.report) never imports it; repro.review and the
worker reach judge and redraw from inside a function, for a text-to-image contest.

  ppd         ppdiffusers, imported quietly; per-process caches
  pretrained  local pipeline directories: checked, identified, loaded; samplers
  tiny        the built-in tiny SD and CLIP for smoke runs
  lora        LoRA layers on a UNet's attention
  images      image-caption folders, built-in landscapes, PNGs and grids
  sampling    the diffusion loss and seeded image generation
  scoring     the FID Inception and CLIP models, and scoring with them
  finetune    what the SD fine-tunes share (base pipeline, provenance, evaluation)
  works       a trained run's model loaded, and its works drawn with their metadata
  generate    python -m repro.diffusion.generate RUN_DIR --prompts FILE (the command of works)
  submit      python -m repro.diffusion.submit RUN_DIR (weights, model card, works)
  redraw      the sandboxed worker's task: a bundle's works drawn again from its weights
  judge       repro.review of a bundle: files, card, works, the redraw compared, scores
"""
