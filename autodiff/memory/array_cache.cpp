#include "autodiff/memory/array_cache.hpp"

#include "autodiff/memory/node_recycler.hpp"

namespace ad {

void release_cached_arrays() noexcept {
    detail::ArrayCache<float>::release();
    detail::ArrayCache<double>::release();
    detail::NodeRecycler<float>::release();
    detail::NodeRecycler<double>::release();
}

std::size_t cached_array_bytes() noexcept {
    return detail::ArrayCache<float>::bytes() + detail::ArrayCache<double>::bytes() +
           detail::NodeRecycler<float>::value_bytes() + detail::NodeRecycler<double>::value_bytes();
}

}  // namespace ad
