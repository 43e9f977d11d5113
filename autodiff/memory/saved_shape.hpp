#pragma once
// SavedShape: an input's shape as a record keeps it, to sum a broadcast
// cotangent back to it.
//
// For: up to four dimensions are stored inline, so that saving and moving a
// shape is a few stores; xtensor's own shape type is a heap vector whose
// moves go element by element through swaps, more than a small op's arithmetic.
// Removing it: records would hold an ad::Shape (std::vector) per input.

#include <algorithm>
#include <array>
#include <cstddef>
#include <memory>

#include "autodiff/inline.hpp"
#include "autodiff/tensor.hpp"

namespace ad::detail {

class SavedShape {
public:
    SavedShape() = default;
    template <class S>
    AD_INLINE explicit SavedShape(const S& shape) : rank_(shape.size()) {
        if (rank_ <= inline_rank_) {
            // Unrolled: g++ turns a loop (or std::copy) into a call to
            // memmove, which costs more than the copy of a few numbers.
            static_assert(inline_rank_ == 4);
            if (rank_ > 0) dims_[0] = shape[0];
            if (rank_ > 1) dims_[1] = shape[1];
            if (rank_ > 2) dims_[2] = shape[2];
            if (rank_ > 3) dims_[3] = shape[3];
        } else {
            more_ = std::make_unique<std::size_t[]>(rank_);
            std::copy(shape.begin(), shape.end(), more_.get());
        }
    }
    template <class S>
    bool equals(const S& shape) const {
        if (shape.size() != rank_) return false;
        const std::size_t* dims = data();
        for (std::size_t i = 0; i < rank_; ++i) {  // not std::equal: see equal_shapes
            if (shape[i] != dims[i]) return false;
        }
        return true;
    }
    Shape to_shape() const { return Shape(data(), data() + rank_); }

private:
    const std::size_t* data() const { return rank_ <= inline_rank_ ? dims_.data() : more_.get(); }

    static constexpr std::size_t inline_rank_ = 4;
    std::size_t rank_ = 0;
    std::array<std::size_t, inline_rank_> dims_{};
    std::unique_ptr<std::size_t[]> more_;  // rank > 4: rare, and a pointer moves faster than a vector
};

}  // namespace ad::detail
