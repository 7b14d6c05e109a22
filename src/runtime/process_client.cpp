#include "runtime/process_client.hpp"

#include <ferry/errors.hpp>
#include <ferry/function.hpp>
#include <mutex>

namespace ferry::runtime {

namespace {
std::mutex mu;
std::shared_ptr<client::client> current;  // guarded by mu
}  // namespace

void set_process_client(std::shared_ptr<client::client> c) {
  std::lock_guard lock(mu);
  current = std::move(c);
}

std::shared_ptr<client::client> process_client() {
  std::lock_guard lock(mu);
  return current;
}

}  // namespace ferry::runtime

namespace ferry::detail {

buffer call_remote(const function_entry& function, const std::function<void(buffer&)>& encode_args) {
  auto c = runtime::process_client();
  if (!c) {
    throw Error("cannot call '" + function.name +
                "' remotely: no ferry runtime is running; make the call inside app.main(argc, argv, entry)");
  }
  return c->call(function, encode_args);
}

}  // namespace ferry::detail
