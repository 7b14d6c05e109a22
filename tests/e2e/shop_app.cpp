// An app whose struct shop::Order has other fields than the e2e binary's shop::Order: a program built from
// other sources, which from_name must tell apart (tests/e2e/deploy_test.cpp).
#include <cstdint>
#include <ferry/ferry.hpp>

namespace shop {
struct Order {
  std::int64_t id = 0;
  std::int32_t quantity = 0;  // (the e2e binary's Order has `items` instead)
};
FERRY_STRUCT(Order, id, quantity)
struct Receipt {
  double total = 0;
};
FERRY_STRUCT(Receipt, total)
}  // namespace shop

ferry::App app{"shop"};
auto price = app.function("price", [](shop::Order o) { return shop::Receipt{2.5 * o.quantity}; });

int main(int argc, char** argv) {
  return app.main(argc, argv, [] {});
}
