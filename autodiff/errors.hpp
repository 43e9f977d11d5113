#pragma once
// Typed exceptions. Every message starts with the op or function that raised
// it and shows the shapes involved, e.g. "matmul: cannot multiply (3, 4) by (5, 2)".

#include <stdexcept>
#include <string>

namespace ad {

/// Operands whose shapes do not fit the op (broadcasting, matmul, reshape, ...).
struct shape_error : std::invalid_argument {
    using std::invalid_argument::invalid_argument;
};

/// Misuse of the tape: backward from a non-scalar, a value from another or a
/// cleared tape, backward twice without retain_graph, no tape recording, ...
struct tape_error : std::logic_error {
    using std::logic_error::logic_error;
};

/// Arguments with bad values: a NaN loss, an axis out of range, an index out of
/// bounds, a learning rate that is not finite.
struct value_error : std::domain_error {
    using std::domain_error::domain_error;
};

/// Files that cannot be read or written (checkpoints, reference cases).
struct io_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

}  // namespace ad
