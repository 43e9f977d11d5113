#include "autodiff/tensor.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "autodiff/errors.hpp"

namespace ad {

std::string shape_string(const Shape& shape) {
    if (shape.size() == 1) return fmt::format("({},)", shape[0]);
    return fmt::format("({})", fmt::join(shape, ", "));
}

Shape broadcast_shapes(const char* op, const Shape& a, const Shape& b) {
    std::size_t rank = std::max(a.size(), b.size());
    Shape out(rank);
    for (std::size_t i = 0; i < rank; ++i) {
        std::size_t da = i < rank - a.size() ? 1 : a[i - (rank - a.size())];
        std::size_t db = i < rank - b.size() ? 1 : b[i - (rank - b.size())];
        if (da != db && da != 1 && db != 1) {
            throw shape_error(fmt::format("{}: cannot broadcast {} with {}", op, shape_string(a),
                                          shape_string(b)));
        }
        out[i] = da == 1 ? db : da;
    }
    return out;
}

bool broadcasts_to(const Shape& from, const Shape& to) {
    if (from.size() > to.size()) return false;
    std::size_t lead = to.size() - from.size();
    for (std::size_t i = 0; i < from.size(); ++i) {
        if (from[i] != 1 && from[i] != to[lead + i]) return false;
    }
    return true;
}

std::size_t normalize_axis(const char* op, long axis, std::size_t rank) {
    long r = static_cast<long>(rank);
    if (axis < -r || axis >= r) {
        throw value_error(fmt::format("{}: axis {} is out of range for a value of rank {}", op, axis, rank));
    }
    return static_cast<std::size_t>(axis < 0 ? axis + r : axis);
}

std::size_t element_count(const Shape& shape) {
    std::size_t n = 1;
    for (std::size_t d : shape) n *= d;
    return n;
}

}  // namespace ad
