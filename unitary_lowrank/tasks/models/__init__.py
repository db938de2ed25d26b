"""The study models of the paper's experiments, in PyTorch: what the training programs build and compare.

    LipConvNet     1-Lipschitz CNN of the certified-robustness literature (.lipconvnet)
    ResNet9        the projUNN paper's CIFAR-10 network (.resnet9)
    CayleyConv2d   Cayley-FFT orthogonal convolution, a baseline (.baselines)
    AOLConv2d      almost-orthogonal (AOL) convolution, a baseline (.baselines)
    TorchlipConv2d deel-torchlip's SpectralConv2d, circular: an external baseline (.baselines, extra [torchlip])
    LSTMBaseline   the recurrent tasks' LSTM baseline (.lstm)

Built from the layers users compose (:mod:`unitary_lowrank.backends.torch`);
nothing in the library below imports them. Each module imports torch.
"""
