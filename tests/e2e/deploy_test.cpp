// Deployed apps and durable spawned calls, end to end against a standalone `ferry server`: the e2e binary is
// deployed as app "platform", and the test program (app "e2e") reaches it by name.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "process.hpp"
#include "test_app.hpp"

namespace e2e {
namespace {

using testing::HasSubstr;
using Square = ferry::Function<std::int64_t(std::int64_t)>;
using Add = ferry::Function<std::int64_t(std::int64_t, std::int64_t)>;
using Hold = ferry::Function<bool(std::string)>;

/// Waits until `ferry ps` shows a container of `function` running one input; false after 30 s.
bool one_input_running(const ferry_server& server, const std::string& function) {
  for (int i = 0; i < 1500; ++i) {
    std::istringstream lines(server.cli({"ps"}).out);
    std::string id, app, fn, state;
    int inputs = 0;
    std::string line;
    while (std::getline(lines, line)) {
      std::istringstream(line) >> id >> app >> fn >> state >> inputs;
      if (fn == function && state == "ready" && inputs == 1) return true;
    }
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

TEST(deploy, a_deployed_app_is_called_by_name_from_other_programs_and_the_cli) {
  deployed_server d;
  const auto apps = d.server.cli({"apps"});
  EXPECT_EQ(apps.code, 0) << apps.err;
  EXPECT_THAT(apps.out, HasSubstr("platform"));
  EXPECT_THAT(apps.out, HasSubstr("add  int64(int64,int64)"));
  // The deploying program has exited; this one (app "e2e") calls the deployed one, in every form.
  EXPECT_EQ(run_app([] {
              auto add_deployed = Add::from_name("platform", "add");
              EXPECT_EQ(add_deployed.remote(20, 22), 42);
              EXPECT_EQ(add_deployed.remote(add_deployed.future(1, 2), 3), 6);  // futures work across the name
            }),
            0);
  EXPECT_EQ(run_app([]() -> ferry::Task<void> {
              auto square_deployed = co_await Square::from_name.aio("platform", "square");
              EXPECT_EQ(co_await square_deployed.remote.aio(9), 81);
            }),
            0);
  const auto called = d.server.cli({"call", "platform.add", "[20, 22]"});
  EXPECT_EQ(called.code, 0) << called.err;
  EXPECT_EQ(called.out, "42\n");
  const auto wrong = d.server.cli({"call", "platform.add", "[\"a\", 2]"});
  EXPECT_EQ(wrong.code, 1);
  EXPECT_THAT(wrong.err, HasSubstr("'add': argument 1: expected int64, received string"));
  const auto stopped = d.server.cli({"stop", "platform"});
  EXPECT_EQ(stopped.code, 0) << stopped.err;
  EXPECT_THAT(d.server.cli({"apps"}).out, testing::Not(HasSubstr("platform")));
  EXPECT_EQ(run_app([] { EXPECT_THROW(Add::from_name("platform", "add"), ferry::UnknownFunctionError); }), 0);
}

TEST(deploy, a_signature_that_does_not_match_the_deployed_one_is_an_error_before_anything_runs) {
  deployed_server d;
  EXPECT_EQ(run_app([] {
              try {
                ferry::Function<std::string(std::int64_t, std::int64_t)>::from_name("platform", "add");
                ADD_FAILURE() << "no exception";
              } catch (const ferry::SignatureMismatchError& e) {
                EXPECT_THAT(e.what(), HasSubstr("'platform.add' is deployed as int64(int64,int64), but this program "
                                                "declares it as string(int64,int64)"));
              }
              try {
                Add::from_name("platform", "no_such_function");
                ADD_FAILURE() << "no exception";
              } catch (const ferry::UnknownFunctionError& e) {
                EXPECT_THAT(e.what(), HasSubstr("app 'platform' has no function 'no_such_function'"));
              }
            }),
            0);
}

}  // namespace
}  // namespace e2e

// Two namespaces' structs of one unqualified name, and this program's own shop::Order, whose fields are not
// those of the deployed shop_app's shop::Order.
namespace other {
struct Order {
  std::int64_t id = 0;
  std::int32_t quantity = 0;
};
FERRY_STRUCT(Order, id, quantity)
struct Receipt {
  double total = 0;
};
FERRY_STRUCT(Receipt, total)
}  // namespace other
namespace shop {
struct Order {
  std::int64_t id = 0;
  std::vector<std::string> items;
};
FERRY_STRUCT(Order, id, items)
struct Receipt {
  double total = 0;
};
FERRY_STRUCT(Receipt, total)
}  // namespace shop

namespace e2e {
namespace {

TEST(deploy, structs_are_compared_by_qualified_name_and_fields_before_anything_runs) {
  ferry_server server;
  scoped_env env({{"FERRY_SERVER", server.address()}, {"FERRY_TOKEN", server.token()}});
  ASSERT_EQ(server.cli({"deploy", FERRY_SHOP_APP_PATH}).code, 0);
  // The same unqualified names and fields, in another namespace: another type.
  try {
    ferry::Function<other::Receipt(other::Order)>::from_name("shop", "price");
    ADD_FAILURE() << "no exception";
  } catch (const ferry::SignatureMismatchError& e) {
    EXPECT_THAT(e.what(), HasSubstr("'shop.price' is deployed as shop::Receipt(shop::Order), but this program "
                                    "declares it as other::Receipt(other::Order)"));
  }
  // The same qualified names, other fields: a program built from other sources.
  try {
    ferry::Function<shop::Receipt(shop::Order)>::from_name("shop", "price");
    ADD_FAILURE() << "no exception";
  } catch (const ferry::SignatureMismatchError& e) {
    EXPECT_THAT(e.what(),
                HasSubstr("its struct shop::Order is not this program's: deployed "
                          "shop::Order{id:int64,quantity:int32}, here shop::Order{id:int64,items:vector<string>}"));
  }
}

TEST(deploy, redeploying_sends_new_calls_to_the_new_version_while_calls_in_flight_finish) {
  deployed_server d;
  const std::string dir = scratch_dir();
  EXPECT_EQ(run_app([&] {
              auto hold_deployed = Hold::from_name("platform", "hold");
              auto in_flight = hold_deployed.future(dir + "/gate");
              in_flight.run();
              ASSERT_TRUE(one_input_running(d.server, "hold"));  // it runs: now redeploy
              const auto again = d.server.cli({"deploy", "--name", "platform", E2E_BINARY});
              EXPECT_EQ(again.code, 0) << again.err;
              std::ofstream(dir + "/gate") << "open\n";
              EXPECT_TRUE(in_flight.result());                               // finished on the old version's container
              EXPECT_EQ(Add::from_name("platform", "add").remote(1, 1), 2);  // the new version serves
            }),
            0);
}

TEST(deploy, a_spawned_call_outlives_its_program_and_is_fetched_by_id_from_another) {
  deployed_server d;
  const std::string dir = scratch_dir();
  std::string id, keyed_id;
  EXPECT_EQ(run_app([&] {
              auto square_deployed = Square::from_name("platform", "square");
              id = square_deployed.spawn(7).id();
              EXPECT_THAT(id, testing::StartsWith("fc-"));
              // The same idempotency key returns the same call.
              keyed_id = square_deployed.spawn(ferry::SpawnOptions{.idempotency_key = "once"}, 8).id();
              EXPECT_EQ(square_deployed.spawn(ferry::SpawnOptions{.idempotency_key = "once"}, 8).id(), keyed_id);
            }),
            0);
  EXPECT_EQ(run_app([&] {
              EXPECT_EQ(ferry::FunctionCall<std::int64_t>::from_id(id).get(30s), 49);
              EXPECT_EQ(ferry::FunctionCall<std::int64_t>::from_id(keyed_id).get(), 64);
              EXPECT_THROW(ferry::FunctionCall<std::int64_t>::from_id("fc-0000000000000000"), ferry::UnknownCallError);
              try {
                ferry::FunctionCall<std::string>::from_id(id).get();
                ADD_FAILURE() << "no exception";
              } catch (const ferry::Error& e) {
                EXPECT_THAT(e.what(), HasSubstr("the result of call " + id +
                                                " does not decode as string: expected "
                                                "string, received integer 49; FunctionCall<R>::from_id needs R"));
              }
              // A timeout that only means "not finished yet" is its own error; the call goes on.
              auto held = Hold::from_name("platform", "hold").spawn(dir + "/gate");
              EXPECT_THROW(held.get(50ms), ferry::NotFinishedError);
              std::ofstream(dir + "/gate") << "open\n";
              EXPECT_TRUE(held.get());
            }),
            0);
  EXPECT_EQ(run_app([&]() -> ferry::Task<void> {
              auto call = co_await ferry::FunctionCall<std::int64_t>::from_id.aio(id);
              EXPECT_EQ(co_await call.get.aio(30s), 49);
              auto square_deployed = co_await Square::from_name.aio("platform", "square");
              auto spawned = co_await square_deployed.spawn.aio(12);
              EXPECT_EQ(co_await spawned.get.aio(), 144);
            }),
            0);
  const auto calls = d.server.cli({"calls"});
  EXPECT_EQ(calls.code, 0) << calls.err;
  EXPECT_THAT(calls.out, HasSubstr(id));
  EXPECT_THAT(calls.out, HasSubstr("platform.square"));
}

TEST(deploy, a_body_spawns_calls_too_on_an_embedded_server_and_in_a_renamed_deployment) {
  EXPECT_EQ(run_app([] { EXPECT_EQ(spawner.remote(7), 49); }), 0);  // embedded: spawns kept in memory
  deployed_server d;
  EXPECT_EQ(run_app([] { EXPECT_EQ(Square::from_name("platform", "spawner").remote(8), 64); }), 0);
}

TEST(deploy, a_cancelled_spawned_call_ends_cancelled_whether_its_body_blocks_or_awaits) {
  deployed_server d;
  const std::string dir = scratch_dir();
  EXPECT_EQ(run_app([&] {
              auto blocking = Hold::from_name("platform", "hold").spawn(dir + "/never");  // polls cancelled()
              EXPECT_THROW(blocking.get(100ms), ferry::NotFinishedError);
              blocking.cancel();
              EXPECT_THROW(blocking.get(30s), ferry::CancelledError);
              // An async body is cancelled at its suspension point (a 60 s sleep).
              auto sleeping = ferry::Function<bool(std::string, std::string)>::from_name("platform", "sleeper");
              auto awaiting = sleeping.spawn("sleep", "spawned");
              EXPECT_THROW(awaiting.get(100ms), ferry::NotFinishedError);
              awaiting.cancel();
              EXPECT_THROW(awaiting.get(30s), ferry::CancelledError);
            }),
            0);
}

TEST(deploy, a_result_past_the_retention_period_is_expired_not_missing) {
  ferry_server server({"--retention", "0"});
  scoped_env env({{"FERRY_SERVER", server.address()}, {"FERRY_TOKEN", server.token()}});
  ASSERT_EQ(server.cli({"deploy", "--name", "platform", E2E_BINARY}).code, 0);
  EXPECT_EQ(run_app([&] {
              auto call = Square::from_name("platform", "square").spawn(3);
              EXPECT_EQ(call.get(30s), 9);                          // delivered as it finished
              EXPECT_THROW(call.get(), ferry::ResultExpiredError);  // kept for 0 s
            }),
            0);
}

TEST(deploy, spawned_calls_survive_a_kill_9_of_the_server_and_all_1000_complete_after_the_restart) {
  deployed_server d;
  const std::string dir = scratch_dir();
  std::vector<std::string> ids;
  EXPECT_EQ(run_app([&] {
              auto slow =
                  ferry::Function<std::int64_t(std::string, std::int64_t)>::from_name("platform", "slow_square");
              for (std::int64_t i = 0; i < 1000; ++i) ids.push_back(slow.spawn(dir + "/gate", i).id());
            }),
            0);
  // Every call waits for the gate: none has finished when the server dies.
  d.server.kill_and_restart();
  EXPECT_TRUE(d.server.proc().wait_for_output("recovered 1 deployed app(s) and 1000 unfinished spawned call(s)"))
      << d.server.proc().err();
  std::ofstream(dir + "/gate") << "open\n";
  EXPECT_EQ(run_app([&] {
              std::int64_t wrong = 0;
              for (std::int64_t i = 0; i < 1000; ++i) {
                wrong += ferry::FunctionCall<std::int64_t>::from_id(ids[i]).get(60s) != i * i;
              }
              EXPECT_EQ(wrong, 0);
            }),
            0);
}

TEST(deploy, spawns_beyond_the_queue_limit_wait_in_the_store_and_all_run) {
  ferry_server server({"--max-queued-inputs", "10"});
  scoped_env env({{"FERRY_SERVER", server.address()}, {"FERRY_TOKEN", server.token()}});
  ASSERT_EQ(server.cli({"deploy", "--name", "platform", E2E_BINARY}).code, 0);
  const std::string dir = scratch_dir();
  EXPECT_EQ(run_app([&] {
              // 100 run (2 containers x 50), 10 queue in memory, the rest wait in the store: none is refused.
              auto slow =
                  ferry::Function<std::int64_t(std::string, std::int64_t)>::from_name("platform", "slow_square");
              std::vector<ferry::FunctionCall<std::int64_t>> calls;
              for (std::int64_t i = 0; i < 300; ++i) calls.push_back(slow.spawn(dir + "/gate", i));
              std::ofstream(dir + "/gate") << "open\n";
              std::int64_t wrong = 0;
              for (std::int64_t i = 0; i < 300; ++i) wrong += calls[i].get(60s) != i * i;
              EXPECT_EQ(wrong, 0);
            }),
            0);
}

TEST(deploy, sigterm_lets_running_inputs_finish_refuses_new_calls_and_the_server_exits) {
  deployed_server d;
  const std::string dir = scratch_dir();
  EXPECT_EQ(run_app([&] {
              auto hold_deployed = Hold::from_name("platform", "hold");
              auto running = hold_deployed.future(dir + "/gate");
              running.run();
              ASSERT_TRUE(one_input_running(d.server, "hold"));
              d.server.proc().signal(SIGTERM);
              EXPECT_TRUE(d.server.proc().wait_for_output("draining"));
              try {
                hold_deployed.remote(dir + "/gate");
                ADD_FAILURE() << "no exception";
              } catch (const ferry::ConnectionError& e) {
                EXPECT_THAT(e.what(), HasSubstr("the ferry server is shutting down; retry against a running server"));
              }
              std::ofstream(dir + "/gate") << "open\n";
              EXPECT_TRUE(running.result());  // it finished, and its result reached us
            }),
            0);
  EXPECT_EQ(d.server.proc().wait(30s), 0);
}

}  // namespace
}  // namespace e2e
