// An in-process iser::target::Target on its own loop thread, with an in-memory LUN 0,
// for the initiator tests.
#ifndef TESTS_ISER_INITIATOR_INITIATOR_TEST_UTIL_H_
#define TESTS_ISER_INITIATOR_INITIATOR_TEST_UTIL_H_

#include <signal.h>

#include <atomic>
#include <cstring>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <thread>

#include "gtest/gtest.h"
#include "iser/base/event_loop.h"
#include "iser/initiator/session_config.h"
#include "iser/initiator/sync_initiator.h"
#include "iser/scsi/scsi_device.h"
#include "iser/target/target.h"
#include "iser/transport/iser/iser_portal.h"
#include "iser/transport/select/transport_select.h"
#include "iser/transport/tcp/tcp_connection.h"
#include "iser/transport/tcp/tcp_initiator_connection.h"
#include "iser/transport/tcp/tcp_listener.h"
#include "tests/iser/scsi/memory_block_store.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#include <sanitizer/lsan_interface.h>
#define ISER_TEST_HAS_LSAN 1
#endif
#endif

namespace iser::initiator::testing {

inline constexpr char kIqn[] = "iqn.2026-11.org.iser-csi:init-test";
inline constexpr char kInitiatorIqn[] = "iqn.2026-11.org.iser-csi:node-a";
inline constexpr uint64_t kLunBytes = 32 << 20;

struct TargetSetup {
  login::ChapCredentials chap;
  login::ChapCredentials mutual_chap;
  target::TargetOptions options = DefaultOptions();
  // Set: listen through an iSER portal (iSCSI/TCP and iSER on one port, or one of them)
  // instead of a plain TCP listener.
  std::optional<iser_transport::PortalTransport> portal;
  static target::TargetOptions DefaultOptions() {
    target::TargetOptions o;
    o.nop_interval = absl::ZeroDuration();
    // What iser-target declares for its iSER connections: one per posted receive.
    o.offer.target_max_outstanding_unexpected_pdus =
        iser_transport::IserConnectionOptions().recv_depth;
    return o;
  }
};

class InProcessTarget {
 public:
  explicit InProcessTarget(TargetSetup setup = {}) : setup_(std::move(setup)) {
    // The target's transport writes with writev; a peer that vanished must not kill us
    // (the iser-target daemon ignores SIGPIPE the same way).
    ::signal(SIGPIPE, SIG_IGN);
    auto loop = EventLoop::Create();
    EXPECT_TRUE(loop.ok());
    loop_ = std::move(*loop);
    store_ = std::make_shared<scsi::testing::MemoryBlockStore>(kLunBytes);
    MakeTarget();
    Listen("127.0.0.1:0");
    thread_ = std::thread([this] { loop_->Run(); });
  }
  ~InProcessTarget() {
    DestroyTarget();
    loop_->Post([this] { loop_->Stop(); });
    thread_.join();
  }

  // A graceful restart on the same portal and store, as iser-target's SIGTERM + start:
  // stop listening, drain (Async logout requests; in-flight commands finish), replace
  // the Target, listen again after `down`.
  void Restart(absl::Duration down = absl::Milliseconds(200)) {
    std::promise<void> drained;
    Run([&] {
      listener_.reset();
      portal_obj_.reset();
#ifdef ISER_TEST_HAS_LSAN
      // Target::Drain's poll closure owns itself (a shared_ptr cycle in the target's
      // code, reported to its owner); keep it out of this test's leak report.
      __lsan::ScopedDisabler lsan_off;
#endif
      target_->Drain(absl::Seconds(5), [&] { drained.set_value(); });
    });
    drained.get_future().get();
    DestroyTarget();
    absl::SleepFor(down);
    Run([this] {
      MakeTarget();
      Listen(portal_);
    });
  }

 private:
  void MakeTarget() {
    target_ = std::make_unique<target::Target>(loop_.get(), setup_.options);
    auto device = std::make_unique<scsi::Device>();
    scsi::LogicalUnitConfig lc;
    lc.serial = "init0";
    lc.naa_id = 0x654321;
    lc.target_name = kIqn;
    EXPECT_TRUE(device->AddLogicalUnit(0, store_, lc).ok());
    login::TargetNodeInfo info;
    info.name = kIqn;
    info.chap = setup_.chap;
    info.mutual_chap = setup_.mutual_chap;
    EXPECT_TRUE(target_->AddNode(info, std::move(device)).ok());
  }

 public:
  // Closes everything and destroys the Target after the connection teardown it deferred
  // (Target::ConnectionClosed destroys connections in EventLoop::Defer; destroying the
  // Target in the same batch would leave them pointing at it).
  void DestroyTarget() {
    Run([this] {
      listener_.reset();
      portal_obj_.reset();
      target_->CloseAllConnections();
    });
    for (int i = 0; i < 200; ++i) {
      size_t n = 0;
      Run([&] { n = target_->connection_count(); });
      if (n == 0) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    std::promise<void> gone;
    loop_->Post([&] {
      loop_->Defer([&] {
        target_.reset();
        gone.set_value();
      });
    });
    gone.get_future().get();
  }

  // Runs `fn` on the target's loop thread and waits.
  void Run(std::function<void()> fn) {
    std::promise<void> p;
    loop_->Post([&] {
      fn();
      p.set_value();
    });
    p.get_future().get();
  }

  // Kills every connection (the network failed, or the target restarted).
  void DropConnections() {
    Run([this] { target_->CloseAllConnections(); });
  }
  // Stops listening (the portal goes away) / listens again on the same port.
  void StopListening() {
    Run([this] {
      listener_.reset();
      portal_obj_.reset();
    });
  }
  void Relisten() {
    Run([this] { Listen(portal_); });
  }

  std::string portal() const { return portal_; }
  SessionConfig Config(transport::TransportChoice choice = transport::TransportChoice::kTcp) const {
    SessionConfig c;
    c.portal = portal_;
    c.initiator_name = kInitiatorIqn;
    c.target_name = kIqn;
    c.transport_factory = transport::InitiatorTransportFactory(choice);
    return c;
  }
  scsi::testing::MemoryBlockStore& store() { return *store_; }
  target::Target& target() { return *target_; }
  iser_transport::Portal* iser_portal() { return portal_obj_.get(); }
  EventLoop* loop() { return loop_.get(); }

 private:
  void Listen(const std::string& address) {
    if (setup_.portal.has_value()) {
      iser_transport::PortalOptions po;
      po.transport = *setup_.portal;
      auto portal = iser_transport::Portal::Create(loop_.get(), target_.get(), address, po);
      ASSERT_TRUE(portal.ok()) << portal.status();
      portal_obj_ = std::move(*portal);
      portal_ = portal_obj_->address();
      return;
    }
    auto listener = transport::TcpListener::Create(
        loop_.get(), address, [this](UniqueFd fd, std::string peer, std::string local) {
          target_->AddConnection(std::make_unique<transport::TcpConnection>(
              loop_.get(), std::move(fd), std::move(peer), std::move(local)));
        });
    ASSERT_TRUE(listener.ok()) << listener.status();
    listener_ = std::move(*listener);
    portal_ = listener_->address();
  }

  TargetSetup setup_;
  std::unique_ptr<EventLoop> loop_;
  std::unique_ptr<target::Target> target_;
  std::shared_ptr<scsi::testing::MemoryBlockStore> store_;
  std::unique_ptr<transport::TcpListener> listener_;
  std::unique_ptr<iser_transport::Portal> portal_obj_;
  std::string portal_;
  std::thread thread_;
};

// Deterministic test pattern for (lba, generation).
inline std::vector<uint8_t> Pattern(size_t bytes, uint64_t seed) {
  std::vector<uint8_t> v(bytes);
  uint64_t x = seed * 0x9e3779b97f4a7c15ULL + 1;
  for (size_t i = 0; i < bytes; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    v[i] = static_cast<uint8_t>(x);
  }
  return v;
}

// Starts `count` I/Os at once on the initiator's loop (start(i, done) issues the i-th)
// and waits up to a minute for all; returns how many failed (count if they hung).
inline int RunConcurrently(SyncInitiator* ini, int count,
                           const std::function<void(int, IoCallback)>& start) {
  std::atomic<int> done{0}, failed{0};
  std::promise<void> all;
  ini->RunOnLoop([&] {
    for (int i = 0; i < count; ++i) {
      start(i, [&](absl::Status s) {
        if (!s.ok()) ++failed;
        if (++done == count) all.set_value();
      });
    }
  });
  if (all.get_future().wait_for(std::chrono::seconds(60)) != std::future_status::ready) {
    ADD_FAILURE() << "I/Os did not complete within a minute";
    return count;
  }
  return failed;
}

// `count` concurrent writes of `bytes` (distinct ranges from LBA 0), checked in the
// target's store, then concurrent reads of the same ranges, checked against the data.
inline void ConcurrentWritesThenReads(InProcessTarget& target, SyncInitiator* ini, LunHandle* lun,
                                      int count, size_t bytes, int seed) {
  std::vector<std::vector<uint8_t>> bufs;
  for (int i = 0; i < count; ++i) bufs.push_back(Pattern(bytes, seed + i));
  auto lba = [&](int i) { return static_cast<uint64_t>(i) * (bytes / 512); };
  ASSERT_EQ(0, RunConcurrently(ini, count, [&](int i, IoCallback done) {
              lun->Write(lba(i), bufs[i], std::move(done));
            }));
  for (int i = 0; i < count; ++i) {
    ASSERT_EQ(0, std::memcmp(target.store().data().data() + i * bytes, bufs[i].data(), bytes)) << i;
  }
  std::vector<std::vector<uint8_t>> back(count, std::vector<uint8_t>(bytes));
  ASSERT_EQ(0, RunConcurrently(ini, count, [&](int i, IoCallback done) {
              lun->Read(lba(i), back[i], std::move(done));
            }));
  for (int i = 0; i < count; ++i) ASSERT_EQ(back[i], bufs[i]) << i;
}

// Keeps `depth` writes of `bytes` in flight over `total` distinct LBA ranges; calls
// `midway` (from the test thread) once half are acknowledged.
struct WriteStream {
  SyncInitiator* ini;
  LunHandle* lun;
  int total = 400;
  int depth = 32;
  size_t bytes = 64 << 10;
  // Initialized here so that `WriteStream ws{ini, lun}` names every field it must.
  std::vector<std::vector<uint8_t>> data{};
  std::vector<int> completions{};
  std::vector<absl::Status> status{};
  std::atomic<int> acked{0};
  int next = 0;
  std::promise<void> finished{};

  void Start() {
    for (int i = 0; i < total; ++i) data.push_back(Pattern(bytes, 5000 + i));
    completions.assign(total, 0);
    status.assign(total, absl::OkStatus());
    ini->RunOnLoop([this] {
      for (int i = 0; i < depth; ++i) IssueNext();
    });
  }
  // Waits for every write, checks each completed exactly once and well, and reads every
  // range back.
  void Verify() {
    ASSERT_EQ(finished.get_future().wait_for(std::chrono::seconds(60)), std::future_status::ready);
    for (int i = 0; i < total; ++i) {
      ASSERT_EQ(completions[i], 1) << i;
      ASSERT_TRUE(status[i].ok()) << i << ": " << status[i];
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    for (int i = 0; i < total; ++i) ASSERT_EQ(completions[i], 1) << "completed twice: " << i;
    for (int i = 0; i < total; ++i) {
      std::vector<uint8_t> back(bytes);
      ASSERT_TRUE(ini->Read(lun, static_cast<uint64_t>(i) * (bytes / 512), back).ok());
      ASSERT_EQ(back, data[i]) << i;
    }
  }
  void IssueNext() {
    if (next >= total) return;
    int i = next++;
    lun->Write(static_cast<uint64_t>(i) * (bytes / 512), data[i], [this, i](absl::Status s) {
      ++completions[i];
      status[i] = s;
      IssueNext();
      if (++acked == total) finished.set_value();
    });
  }
};

}  // namespace iser::initiator::testing

#endif  // TESTS_ISER_INITIATOR_INITIATOR_TEST_UTIL_H_
