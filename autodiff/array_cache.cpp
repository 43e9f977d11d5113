#include "autodiff/array_cache.hpp"

namespace ad {

void release_cached_arrays() noexcept {
    detail::ArrayCache<float>::release();
    detail::ArrayCache<double>::release();
}

std::size_t cached_array_bytes() noexcept {
    return detail::ArrayCache<float>::bytes() + detail::ArrayCache<double>::bytes();
}

}  // namespace ad
