#include "container/container_runtime.hpp"

#include <sys/prctl.h>
#include <unistd.h>

#include <boost/asio/signal_set.hpp>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "base/env.hpp"
#include "client/client.hpp"
#include "container/input_runner.hpp"
#include "container/output_capture.hpp"
#include "container/stack_trace.hpp"

namespace ferry::container {

namespace asio = boost::asio;

bool in_container() { return std::getenv("FERRY_CONTAINER_ID") != nullptr; }

int run_container(const served_app& app) {
  // Die with the server that started us, even when it is killed outright.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (std::to_string(::getppid()) != env_or_empty("FERRY_PARENT_PID")) return 0;
  // Tell the server the program's main got this far (a start that fails before says so).
  if (const std::string fd = env_or_empty("FERRY_MAIN_FD"); !fd.empty()) {
    const int main_fd = std::atoi(fd.c_str());
    (void)!::write(main_fd, "m", 1);
    ::close(main_fd);
    ::unsetenv("FERRY_MAIN_FD");  // NOLINT(concurrency-mt-unsafe): see FERRY_TOKEN below
  }

  const std::string function_name = env_or_empty("FERRY_FUNCTION");
  const std::string token = env_or_empty("FERRY_TOKEN");
  // The body has no business with it. (Before ferry starts its threads; a program that started threads of its
  // own before app.main must not read the environment from them meanwhile.)
  ::unsetenv("FERRY_TOKEN");  // NOLINT(concurrency-mt-unsafe)
  if (env_or_empty("FERRY_APP") != app.name) {
    std::fprintf(stderr, "ferry container: this binary declares app '%s', but the server started it for app '%s'\n",
                 app.name.c_str(), env_or_empty("FERRY_APP").c_str());
    return 3;
  }
  const detail::function_entry* function = nullptr;
  for (const auto& f : app.functions) {
    if (f->name == function_name) function = f.get();
  }
  if (!function) {
    std::fprintf(stderr, "ferry container: app '%s' in this binary does not declare function '%s'\n", app.name.c_str(),
                 function_name.c_str());
    return 3;
  }
  record_throw_stacks();
  print_stack_on_fatal_signals();
  capture_output();

  std::unique_ptr<input_runner> runner = input_runner::make(*function);
  client::connect_options options;
  options.server = client::endpoint::parse(env_or_empty("FERRY_SERVER"));
  options.token = token;
  options.server_cert = env_or_empty("FERRY_SERVER_CERT");  // (a fingerprint: its agent's or server's pin)
  options.role = wire::peer_role::container;
  options.container_id = std::strtoull(env_or_empty("FERRY_CONTAINER_ID").c_str(), nullptr, 10);
  std::shared_ptr<client::client> c;
  try {
    c = client::client::connect(options, {[&runner](client::input in) { runner->submit(std::move(in)); },
                                          [&runner](std::uint64_t id) { runner->cancel(id); }});
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ferry container: %s\n", e.what());
    return 4;
  }
  app.connected(c);  // before any body runs: bodies make nested calls through it
  runner->set_sender(
      {[c](std::uint64_t input_id, wire::status status, const std::function<void(detail::buffer&)>& write) {
         c->send_output(input_id, status, write);
       },
       [c](std::uint64_t input_id, const detail::buffer& arguments) { c->send_tail_hop(input_id, arguments); }});
  // SIGTERM (the server stopping it) and SIGINT end it as the server's closing the connection does: what it
  // counted and wrote goes out before it exits.
  asio::signal_set stop_signals(c->executor(), SIGTERM, SIGINT);
  stop_signals.async_wait([raw = c.get()](boost::system::error_code ec, int) {
    if (!ec) raw->close();
  });
  c->wait_closed();
  runner->flush();
  // The server let us go (or went away). Bodies still running belong to a container being stopped:
  // leave without running static destructors under them.
  std::cout.flush();
  std::fflush(nullptr);
  std::_Exit(0);
}

}  // namespace ferry::container
