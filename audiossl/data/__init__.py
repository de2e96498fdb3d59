"""Files to tensors: Kaldi data dirs, audio loading, fbank front ends, datasets and samplers."""
