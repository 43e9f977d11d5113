#pragma once
// AD_INLINE forces inlining of the small helpers that every op and every
// record runs: making a value, an input's slot, fitting and delivering a
// cotangent, releasing a reference. g++'s heuristics leave them as calls,
// which on a small model's step cost more than the helpers' own work; a
// profile-guided build inlines them too, forcing it gets most of that without
// a profile (benchmarks/README.md, where the time goes). Removing it: the
// engine works the same, and small steps are slower without a profile.
//
// Use it only on helpers of a few lines: it copies their code into every
// caller (NodeRef's release is in every Var's destructor).

#if defined(__GNUC__)
#define AD_INLINE [[gnu::always_inline]] inline
#else
#define AD_INLINE inline
#endif
