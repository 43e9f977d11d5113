#pragma once
// Arena: the memory a tape's records live in.
//
// For: a record is a closure of some hundred bytes, one per op. The arena
// hands out room by bumping an offset in chunks it owns, and reset() keeps
// the chunks, so a training loop that records the same graph every step
// allocates no tape storage after its first step. Removing it: each record
// would be a heap allocation and a free per op and step (about as much as
// the record's own work on a small op).

#include <algorithm>
#include <cstddef>
#include <memory>
#include <vector>

#include "autodiff/inline.hpp"

namespace ad::detail {

class Arena {
public:
    /// Room for `size` bytes aligned to `align` (a power of two, at most
    /// alignof(std::max_align_t)). Inline: a bump of the offset; a new chunk
    /// only out of line.
    AD_INLINE void* allocate(std::size_t size, std::size_t align) {
        const std::size_t start = (offset_ + align - 1) & ~(align - 1);
        if (chunk_ < chunks_.size() && start + size <= chunk_sizes_[chunk_]) {
            offset_ = start + size;
            return chunks_[chunk_].get() + start;
        }
        return allocate_in_next_chunk(size, align);
    }

    /// Where the next allocation goes; rewind(mark()) gives back what was
    /// allocated since (a record whose construction threw).
    struct Mark {
        std::size_t chunk, offset;
    };
    Mark mark() const noexcept { return {chunk_, offset_}; }
    void rewind(Mark mark) noexcept {
        chunk_ = mark.chunk;
        offset_ = mark.offset;
    }

    /// Everything is free again; the chunks stay for the next step.
    void reset() noexcept { rewind({0, 0}); }

    std::size_t bytes() const noexcept {
        std::size_t total = 0;
        for (std::size_t size : chunk_sizes_) total += size;
        return total;
    }

private:
    void* allocate_in_next_chunk(std::size_t size, std::size_t align) {
        while (chunk_ < chunks_.size()) {
            const std::size_t start = (offset_ + align - 1) & ~(align - 1);
            if (start + size <= chunk_sizes_[chunk_]) {
                offset_ = start + size;
                return chunks_[chunk_].get() + start;
            }
            ++chunk_;
            offset_ = 0;
        }
        // Chunks grow from small (a small model's step fits in the first) to a
        // size where one allocation serves hundreds of records.
        const std::size_t capacity = std::max(size, std::min(max_chunk_size, first_chunk_size << chunks_.size()));
        chunks_.push_back(std::make_unique<std::byte[]>(capacity));  // aligned for max_align_t
        chunk_sizes_.push_back(capacity);
        chunk_ = chunks_.size() - 1;
        offset_ = size;
        return chunks_[chunk_].get();
    }

    static constexpr std::size_t first_chunk_size = 4 * 1024;
    static constexpr std::size_t max_chunk_size = 64 * 1024;
    std::vector<std::unique_ptr<std::byte[]>> chunks_;
    std::vector<std::size_t> chunk_sizes_;
    std::size_t chunk_ = 0;   // chunk being filled
    std::size_t offset_ = 0;  // first free byte in it
};

}  // namespace ad::detail
