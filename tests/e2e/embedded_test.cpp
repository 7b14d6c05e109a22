// Blocking remote calls on the embedded server: values, concurrency and every error a caller can get.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <sstream>
#include <thread>

#include "process.hpp"
#include "test_app.hpp"

namespace e2e {
namespace {

using testing::HasSubstr;
using testing::Not;
using testing::StartsWith;

sample full_sample() {
  sample s;
  s.flag = true;
  s.small = -128;
  s.big = 18446744073709551615ull;
  s.ratio = 0.1;
  s.text = std::string("nul\0inside", 10);
  s.blob = {std::byte{0}, std::byte{255}, std::byte{7}};
  s.numbers = {1, -2, 2147483647};
  s.index = {{"a", {"x", "y"}}, {"", {}}};
  s.weights = {{-1, 0.5}, {7, 2.25}};
  s.maybe = "present";
  s.pair = {"p", -9};
  s.tuple = {true, 1.5f, "t"};
  return s;
}

/// Calls `function` by name with whatever arguments `encode` writes: how a caller whose idea of the
/// signature is out of date (or a hostile one) reaches a container.
ferry::detail::buffer call_raw(const std::string& function, const std::function<void(ferry::detail::buffer&)>& encode) {
  ferry::detail::function_entry entry;
  entry.app = "e2e";
  entry.name = function;
  return ferry::detail::call_remote(entry, encode, std::source_location::current());
}

TEST(embedded, remote_call_returns_the_value_computed_in_a_container) {
  EXPECT_EQ(run_app([] {
              EXPECT_EQ(add.remote(2, 3), 5);
              EXPECT_EQ(add(40, 2), 42);  // the direct call of a blocking function is a remote call
              EXPECT_EQ(add.local(1, 1), 2);
            }),
            0);
}

TEST(embedded, every_supported_type_round_trips_through_a_container) {
  EXPECT_EQ(run_app([] {
              const sample s = full_sample();
              EXPECT_EQ(echo.remote(s), s);
              EXPECT_EQ(echo.remote(sample{}), sample{});
            }),
            0);
}

TEST(embedded, eight_caller_threads_each_get_their_own_results) {
  EXPECT_EQ(run_app([] {
              std::vector<std::thread> callers;
              std::vector<int> wrong(8, 0);
              for (int t = 0; t < 8; ++t) {
                callers.emplace_back([t, &wrong] {
                  for (std::int64_t i = 0; i < 100; ++i) {
                    const std::int64_t x = t * 1000 + i;
                    if (square.remote(x) != x * x) ++wrong[t];
                  }
                });
              }
              for (auto& c : callers) c.join();
              EXPECT_EQ(wrong, std::vector<int>(8, 0));
            }),
            0);
}

TEST(embedded, max_inputs_runs_that_many_inputs_at_once_on_distinct_threads) {
  EXPECT_EQ(run_app([] {
              std::vector<rendezvous_report> reports(4);
              std::vector<std::thread> callers;
              for (int i = 0; i < 4; ++i) callers.emplace_back([i, &reports] { reports[i] = rendezvous.remote(4); });
              for (auto& c : callers) c.join();
              expect_rendezvous(reports, 4, 4);
            }),
            0);
}

TEST(embedded, standard_exception_is_rethrown_as_its_own_type_with_remote_details) {
  EXPECT_EQ(run_app([] {
              try {
                element_at.remote("abc", 10);
                ADD_FAILURE() << "no exception";
              } catch (const std::out_of_range& e) {
                const ferry::RemoteDetails* remote = ferry::remote_details(e);
                ASSERT_NE(remote, nullptr);
                EXPECT_EQ(remote->type(), "std::out_of_range");
                EXPECT_EQ(remote->function(), "element_at");
                EXPECT_THAT(remote->call_id(), StartsWith("fc-"));
                EXPECT_THAT(e.what(), HasSubstr("basic_string::at"));
                EXPECT_THAT(remote->stack(), HasSubstr("e2e::element_at_body"));
              }
            }),
            0);
}

TEST(embedded, other_exceptions_arrive_as_remote_error_with_type_message_and_stack) {
  EXPECT_EQ(run_app([] {
              try {
                raise_test_error.remote();
                ADD_FAILURE() << "no exception";
              } catch (const ferry::RemoteError& e) {
                EXPECT_EQ(e.type(), "e2e::test_error");
                EXPECT_EQ(e.message(), "the answer is not 42");
                EXPECT_EQ(e.function(), "raise_test_error");
                EXPECT_THAT(e.what(), HasSubstr("raise_test_error"));
                EXPECT_THAT(e.what(), HasSubstr(e.call_id()));
                EXPECT_THAT(e.stack(), HasSubstr("e2e::raise_test_error_body"));
              }
            }),
            0);
}

TEST(embedded, a_crash_report_quotes_that_calls_stderr_as_text_not_earlier_calls_lines) {
  EXPECT_EQ(run_app([] {
              const std::string what = expect_crash_report_quotes_only_its_calls_stderr();
              EXPECT_EQ(what.find('\x1f'), std::string::npos) << what;  // no framing bytes
            }),
            0);
}

TEST(embedded, a_remote_stack_starts_at_the_throw_site_with_names_and_lines_even_for_static_functions) {
  EXPECT_EQ(run_app([] {
              try {
                throw_deep.remote();
                ADD_FAILURE() << "no exception";
              } catch (const std::runtime_error& e) {
                const auto* details = ferry::remote_details(e);
                ASSERT_NE(details, nullptr);
                const std::string stack = details->stack();
                EXPECT_EQ(stack.rfind("  #0 ", 0), 0u) << stack;
                const std::string top = stack.substr(0, stack.find('\n'));
                EXPECT_THAT(top, HasSubstr("fail_in_a_static_helper")) << stack;  // the throw site, by its name
                EXPECT_THAT(top, HasSubstr(" at test_app.cpp:")) << stack;
                EXPECT_THAT(stack, HasSubstr("#3 e2e::throw_deep_body() at test_app.cpp:"));
                EXPECT_THAT(stack, Not(HasSubstr("ferry::detail")));  // ferry's runtime below the body is cut
                EXPECT_THAT(stack, Not(HasSubstr("+0x")));            // no bare offsets
              }
            }),
            0);
}

// A remote stack's symbolizer (elfutils' libdw and the libraries it needs) is loaded when a process first
// names a stack, not at every program's and container's start (docs/benchmarks.md, W6).
TEST(embedded, a_container_loads_the_stack_symbolizer_at_its_first_stack_not_at_its_start) {
  EXPECT_EQ(run_app([] {
              EXPECT_FALSE(libdw_mapped.remote(false));  // started and serving, no stack named yet
              try {
                libdw_mapped.remote(true);
                ADD_FAILURE() << "no exception";
              } catch (const std::runtime_error& e) {
                const auto* details = ferry::remote_details(e);
                ASSERT_NE(details, nullptr);
                EXPECT_THAT(details->stack(), HasSubstr("libdw_mapped_body")) << details->stack();
              }
              EXPECT_TRUE(libdw_mapped.remote(false));  // the same container, once it has named one
            }),
            0);
}

// On one host, a container and the program both reach the embedded server over its Unix socket, not TCP
// (a round trip costs less: docs/benchmarks.md, the floor).
TEST(embedded, the_program_and_its_containers_reach_the_embedded_server_over_a_unix_socket) {
  EXPECT_EQ(
      run_app([] {
        const auto [address, peers] = server_connection.remote();
        EXPECT_THAT(address, StartsWith("unix:@ferry-"));
        // The container's one connection is to the socket FERRY_SERVER names.
        EXPECT_EQ(peers, std::vector<std::string>{address});
        // This process: the program's end of that connection, and the server's ends (unnamed) of it and
        // the container's; no TCP.
        const auto here = connected_sockets();
        EXPECT_EQ(std::count(here.begin(), here.end(), address), 1) << testing::PrintToString(here);
        EXPECT_EQ(std::count_if(here.begin(), here.end(), [](const std::string& p) { return p.starts_with("ip:"); }), 0)
            << testing::PrintToString(here);
      }),
      0);
}

// OpenSSL is loaded at the first use of TLS, which a container on the server's host never makes
// (docs/benchmarks.md, W6).
TEST(embedded, a_container_on_the_servers_host_does_not_load_openssl) {
  EXPECT_EQ(run_app([] {
              EXPECT_TRUE(library_mapped.remote("libc.so"));  // (what the body reads names libraries)
              EXPECT_FALSE(library_mapped.remote("libssl.so"));
              EXPECT_FALSE(library_mapped.remote("libcrypto.so"));
            }),
            0);
}

/// The stacks a crashing program's terminal shows: the lines of `stderr` that are frames ("  #...").
std::vector<std::string> frame_lines(const std::string& stderr_text) {
  std::vector<std::string> frames;
  std::istringstream lines(stderr_text);
  for (std::string line; std::getline(lines, line);) {
    if (line.find("]   #") != std::string::npos) frames.push_back(line);
  }
  return frames;
}

TEST(embedded, a_crash_stack_is_short_and_named_by_default_and_whole_with_ferry_full_stacks) {
  auto r = run({"/proc/self/exe"}, {{"E2E_SCENARIO", "abort_with_retries"}});
  ASSERT_EQ(r.code, 0) << r.err;
  // Three attempts, three crashes, three stacks: each from abort to the body, and no further.
  EXPECT_EQ(frame_lines(r.err).size(), 6u) << r.err;
  EXPECT_THAT(r.err, HasSubstr("ferry container: signal 6 (SIGABRT) in 'crash_thrice' (call fc-"));
  EXPECT_THAT(r.err, HasSubstr("#1 e2e::crash_thrice_body() at test_app.cpp:"));
  // The error quotes the last one.
  EXPECT_THAT(r.out, HasSubstr("'crash_thrice' failed 3 times"));
  EXPECT_THAT(r.out, HasSubstr("#1 e2e::crash_thrice_body() at test_app.cpp:"));
  r = run({"/proc/self/exe"}, {{"E2E_SCENARIO", "abort_with_retries"}, {"FERRY_FULL_STACKS", "1"}});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_GT(frame_lines(r.err).size(), 3u * 10);
  EXPECT_THAT(r.err, HasSubstr("ferry::detail::body_invoker"));
}

TEST(embedded, wrong_argument_type_names_function_position_and_both_types) {
  EXPECT_EQ(run_app([] {
              try {
                call_raw("add", [](ferry::detail::buffer& out) {
                  ferry::detail::encode_arguments(out, std::int64_t{1}, std::string("two"));
                });
                ADD_FAILURE() << "no exception";
              } catch (const ferry::ArgumentError& e) {
                EXPECT_THAT(e.what(), HasSubstr("'add'"));
                EXPECT_THAT(e.what(), HasSubstr("argument 2"));
                EXPECT_THAT(e.what(), HasSubstr("expected int64, received string"));
              }
              try {
                call_raw("add",
                         [](ferry::detail::buffer& out) { ferry::detail::encode_arguments(out, std::int64_t{1}); });
                ADD_FAILURE() << "no exception";
              } catch (const ferry::ArgumentError& e) {
                EXPECT_THAT(e.what(), HasSubstr("'add' takes 2 arguments, received array of 1"));
              }
              EXPECT_EQ(add.remote(1, 2), 3);  // the container keeps serving
            }),
            0);
}

TEST(embedded, unknown_function_is_its_own_error_listing_what_the_app_declares) {
  EXPECT_EQ(run_app([] {
              try {
                call_raw("no_such_function", [](ferry::detail::buffer& out) { ferry::detail::encode_arguments(out); });
                ADD_FAILURE() << "no exception";
              } catch (const ferry::UnknownFunctionError& e) {
                EXPECT_THAT(e.what(), HasSubstr("no function 'no_such_function'"));
                EXPECT_THAT(e.what(), HasSubstr("(it declares: add, "));
                EXPECT_THAT(e.what(), HasSubstr(", square, "));
              }
            }),
            0);
}

TEST(embedded, container_crash_mid_call_reports_the_signal_and_stderr_and_the_server_keeps_serving) {
  EXPECT_EQ(run_app([] {
              try {
                crash.remote();
                ADD_FAILURE() << "no exception";
              } catch (const ferry::ContainerCrashedError& e) {
                EXPECT_THAT(e.what(), HasSubstr("the container running 'crash'"));
                EXPECT_THAT(e.what(), HasSubstr("SIGABRT"));
                EXPECT_THAT(e.what(), HasSubstr("crash: about to abort"));
              }
              EXPECT_EQ(add.remote(2, 2), 4);
              // A new container replaces the crashed one.
              EXPECT_THROW(crash.remote(), ferry::ContainerCrashedError);
            }),
            0);
}

TEST(embedded, container_that_cannot_start_fails_the_call_with_its_exit_and_stderr) {
  EXPECT_EQ(run_app([] {
              try {
                never_starts.remote();
                ADD_FAILURE() << "no exception";
              } catch (const ferry::ContainerStartError& e) {
                EXPECT_THAT(e.what(), HasSubstr("could not start a container for 'never_starts'"));
                EXPECT_THAT(e.what(), HasSubstr("exited with code 3"));
                EXPECT_THAT(e.what(), HasSubstr("failing on purpose"));
              }
              EXPECT_EQ(add.remote(1, 1), 2);
            }),
            0);
}

TEST(embedded, a_program_whose_timer_signals_interrupt_system_calls_runs_its_calls_and_map) {
  const auto r = run({"/proc/self/exe"}, {{"E2E_SCENARIO", "signal_storm"}});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "sum 2668669870\n");  // 1² + … + 20² + 1² + … + 2000²
}

TEST(embedded, an_exception_a_body_lets_through_from_a_nested_call_reaches_the_caller_as_its_own_type) {
  EXPECT_EQ(run_app([] {
              for (int async = 0; async < 2; ++async) {
                auto pass = [&](const std::string& kind) {
                  return async ? async_pass_on.remote(kind) : pass_on.remote(kind);
                };
                const std::string passer = async ? "async_pass_on" : "pass_on";
                try {
                  pass("element_at");
                  ADD_FAILURE() << "no exception";
                } catch (const std::out_of_range& e) {
                  const auto* details = ferry::remote_details(e);
                  ASSERT_NE(details, nullptr);
                  EXPECT_EQ(details->type(), "std::out_of_range");
                  EXPECT_EQ(details->function(), "element_at");  // where it was thrown
                  EXPECT_THAT(details->stack(), HasSubstr("passed on by '" + passer + "'"));
                }
                try {
                  pass("test_error");
                  ADD_FAILURE() << "no exception";
                } catch (const ferry::RemoteError& e) {
                  EXPECT_EQ(e.type(), "e2e::test_error");  // not the RemoteError the passing body saw
                  EXPECT_EQ(e.message(), "the answer is not 42");
                  EXPECT_EQ(e.function(), "raise_test_error");
                }
                try {
                  pass("registered");
                  ADD_FAILURE() << "no exception";
                } catch (const registered_error& e) {
                  EXPECT_STREQ(e.what(), "registered and passed on");
                }
                try {
                  pass("crash");
                  ADD_FAILURE() << "no exception";
                } catch (const ferry::ContainerCrashedError& e) {
                  EXPECT_THAT(e.what(), HasSubstr("crash"));
                  ASSERT_NE(ferry::remote_details(e), nullptr);
                  EXPECT_EQ(ferry::remote_details(e)->function(), passer);
                }
              }
              // A registered type thrown directly is caught as itself too.
              EXPECT_THROW(raise_registered.remote("direct"), registered_error);
            }),
            0);
}

TEST(embedded, an_exception_with_a_huge_message_arrives_bounded_saying_how_much_was_cut) {
  EXPECT_EQ(run_app([] {
              try {
                raise_long.remote(10'000'000);
                ADD_FAILURE() << "no exception";
              } catch (const std::runtime_error& e) {
                const std::string what = e.what();
                EXPECT_LT(what.size(), 10'000u);
                EXPECT_THAT(what, HasSubstr("more bytes not kept"));
              }
              EXPECT_EQ(add.remote(1, 2), 3);  // and the container goes on serving
            }),
            0);
}

TEST(embedded, a_container_can_call_other_functions) {
  EXPECT_EQ(run_app([] { EXPECT_EQ(sum_of_squares.remote(4), 1 + 4 + 9 + 16); }), 0);
}

TEST(embedded, an_exception_escaping_the_entrypoint_makes_main_return_1) {
  EXPECT_EQ(run_app([] { raise_test_error.remote(); }), 1);
}

TEST(embedded, names_follow_one_rule_checked_at_declaration_with_a_catchable_error) {
  EXPECT_THROW(ferry::App("my.app"), std::invalid_argument);  // '.' separates app and function in APP.FUNCTION
  EXPECT_THROW(ferry::App(""), std::invalid_argument);
  EXPECT_THROW(ferry::App("with space"), std::invalid_argument);
  ferry::App valid{"my-app_2"};
  EXPECT_THROW(valid.function("f.g", [] { return 1; }), std::invalid_argument);
  try {
    valid.function("f/g", [] { return 1; });
    ADD_FAILURE() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_THAT(e.what(), HasSubstr("'f/g' is not a valid function name: use 1 to 128 letters, digits, '-' and '_'"));
  }
  (void)valid.function("f", [] { return 1; });
  EXPECT_THROW(valid.function("f", [] { return 2; }), std::invalid_argument);  // declared twice
  EXPECT_THROW(valid.function("g", [] { return 1; }, {.max_containers = 2, .min_containers = 9}),
               std::invalid_argument);
  EXPECT_THROW(valid.function("h", [] { return 1; }, {.retries = -1}), std::invalid_argument);
}

TEST(embedded, an_invalid_name_at_namespace_scope_ends_the_program_with_the_error_not_an_abort) {
  const auto r = run({FERRY_BAD_NAME_APP_PATH});
  EXPECT_EQ(r.code, 1);  // (an abort would be 128 + SIGABRT)
  EXPECT_THAT(r.err, HasSubstr("error: ferry::App: 'my.app' is not a valid app name"));
  EXPECT_THAT(r.err, Not(HasSubstr("terminate called")));
}

TEST(embedded, hello_example_prints_42) {
  const auto r = run({FERRY_HELLO_PATH});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "42\n");
}

}  // namespace
}  // namespace e2e
