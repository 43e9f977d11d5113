#pragma once
// AD_INLINE forces inlining of the small helpers that every op and every
// record runs: making a value, an input's slot, fitting and delivering a
// cotangent, releasing a reference. g++'s heuristics left them as calls.
//
// A profile-guided build of the engine inlined them and took the xor
// training step from 11.1K to 10.0K instructions. Forcing the inlining here
// gets most of that (10.35K) without a profile. The tape/hand time ratio
// went from 2.60x to 2.27x (mlp_step/paired/xor).
//
// Use it only on helpers of a few lines: it copies their code into every
// caller (NodeRef's release is in every Var's destructor).

#if defined(__GNUC__)
#define AD_INLINE [[gnu::always_inline]] inline
#else
#define AD_INLINE inline
#endif
