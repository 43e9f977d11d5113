#include "support/test_support.hpp"

#include "autodiff/memory/node_ref.hpp"

using ad::Array;
using Ref = ad::detail::NodeRef<double>;

TEST_CASE("node ref: copies count, moves and borrows do not, and the last release recycles the node") {
    auto x = ad::constant(Array<double>{1.0, 2.0});
    const Ref& held = x.node_ptr();
    CHECK(held.use_count() == 1);
    {
        Ref copy = held;
        CHECK(held.use_count() == 2);
        CHECK(copy == held);
        Ref moved = std::move(copy);
        CHECK(!copy);
        CHECK(held.use_count() == 2);
        Ref borrowed = Ref::borrow(held.get());
        CHECK(held.use_count() == 2);
        borrowed.forget();  // a borrow ends without a release
    }
    CHECK(held.use_count() == 1);
}

TEST_CASE("node ref: a tape's pin holds one count while it lasts") {
    auto x = ad::constant(Array<double>{3.0});
    ad::detail::Node<double>* node = x.node_ptr().get();
    Ref::hold_pin(node);
    CHECK(x.node_ptr().use_count() == 2);
    Ref::release_pin(node);
    CHECK(x.node_ptr().use_count() == 1);
    CHECK(x.value()(0) == 3.0);
}
