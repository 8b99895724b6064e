"""Access traces of the engine's kernels and a cache simulation of them (issue 18).

The bytes-moved model (engine.traffic and the `*_bytes` functions beside the kernels) says
how much data each step moves across each memory boundary. This package checks it:

- a trace generator per kernel family (`pointwise`, `depthwise`, `direct_conv`,
  `conv_nchwc`, `fused_block`, `pooling`, `max_pool`, `squeeze_excite`, `elementwise`,
  `linear`, `layout`) walks the kernel's own loops -- the same
  work items, tiles, micro-tile order and software prefetches -- and writes the byte
  ranges it loads and stores (`records`);
- `scratch` gives the buffers a kernel allocates itself a modelled address;
- `calls` finds the tracer of a plan step's bound kernel call and splits the work items
  among threads as the kernel does;
- `simulator` runs the traces, step after step, through pycachesim's LRU hierarchy set
  up from a MachineInfo (L1 and L2 private per thread, L3 shared), and gives each step's
  bytes per level, on the model's definitions (engine.traffic).

No pandas, plotly or workbench here.
"""
