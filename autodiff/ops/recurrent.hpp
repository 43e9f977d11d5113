#pragma once
// Fused recurrent cells: the gate arithmetic of one time step as one op, like
// PyTorch's _thnn_fused_gru_cell, and a whole GRU layer's recurrence as one
// op. The input projection x W_ih^T + b_ih stays a linear op.

#include "autodiff/ops/elementwise.hpp"
#include "autodiff/memory/kept.hpp"
#include "autodiff/record.hpp"

namespace ad {

/// The GRU state update from the gates' pre-activations, gate blocks r, z, n
/// in PyTorch's order: gi = x W_ih^T + b_ih (N, 3H), gh = h W_hh^T + b_hh
/// (N, 3H) and the state h (N, H):
///   r = sigmoid(gi_r + gh_r),  z = sigmoid(gi_z + gh_z),
///   n = tanh(gi_n + r gh_n),   h' = (1 - z) n + z h.
/// With g the cotangent of h':
///   dn = g (1 - z) (1 - n^2),  dz = g (h - n) z (1 - z),  dr = dn gh_n r (1 - r);
///   gi_bar = [dr, dz, dn],  gh_bar = [dr, dz, dn r],  h_bar = g z.
/// One pass forward, and one backward pass for all three cotangents when the
/// sweep records nothing; a recording sweep (create_graph) gets them from
/// engine ops, so they differentiate again.
template <class T>
Var<T> gru_cell_gates(const Var<T>& gi, const Var<T>& gh, const Var<T>& h);

/// A GRU layer over a whole sequence: h_t = gru_cell_gates(gi_t, h_{t-1}
/// W_hh^T + b_hh, h_{t-1}) for t = 1..T, from gi = x W_ih^T + b_ih of every
/// step (T N, 3H; step t's rows are [(t-1) N, t N)), the initial state h0
/// (N, H), w_hh (3H, H) and b_hh (3H) (an empty Var: none). Returns the
/// states h_1 .. h_T as (T N, H). One record for the layer: its VJP goes back
/// through time with the cell's VJP per step (g_t plus the carry from step
/// t + 1, carry = h_bar + gh_bar W_hh) and gives W_hh's cotangent, sum_t
/// gh_bar_t^T h_{t-1}, and b_hh's, the column sums of gh_bar, as one product
/// and one sum over all steps; a recording sweep gets them from engine ops.
template <class T>
Var<T> gru_sequence(const Var<T>& gi, const Var<T>& h0, const Var<T>& w_hh, const Var<T>& b_hh);

}  // namespace ad
