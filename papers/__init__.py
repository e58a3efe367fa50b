"""Paper plugins. Every package here is listed explicitly: discovery imports
exactly these (tests check that no folder is left out)."""
PAPER_PACKAGES = ("mnist1d", "lenet5", "resnet_cifar", "kim_cnn", "chnsenticorp_rnn", "sd_lora", "dreambooth", "ddpm")
