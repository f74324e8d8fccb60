// The target under hostile or broken initiators: every bad PDU is answered with a Reject
// or closes that one connection, and the target keeps serving everyone else.
#include <cstring>
#include <future>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "iser/base/event_loop.h"
#include "iser/scsi/scsi_device.h"
#include "iser/target/target.h"
#include "iser/transport/tcp/tcp_connection.h"
#include "iser/transport/tcp/tcp_listener.h"
#include "tests/iser/scsi/memory_block_store.h"
#include "tests/iser/target/raw_initiator.h"

namespace iser::target {
namespace {

using pdu::Bhs;
using pdu::Opcode;
using testing::RawInitiator;

constexpr char kIqn[] = "iqn.2026-11.org.iser-csi:robust";

class TargetFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    auto loop = EventLoop::Create();
    ASSERT_TRUE(loop.ok());
    loop_ = std::move(*loop);
    TargetOptions options;
    options.nop_interval = absl::ZeroDuration();
    target_ = std::make_unique<Target>(loop_.get(), options);
    auto device = std::make_unique<scsi::Device>();
    store_ = std::make_shared<scsi::testing::MemoryBlockStore>(8 << 20);
    scsi::LogicalUnitConfig lc;
    lc.serial = "robust0";
    lc.naa_id = 0x123456;
    lc.target_name = kIqn;
    ASSERT_TRUE(device->AddLogicalUnit(0, store_, lc).ok());
    login::TargetNodeInfo info;
    info.name = kIqn;
    ASSERT_TRUE(target_->AddNode(info, std::move(device)).ok());
    auto listener = transport::TcpListener::Create(
        loop_.get(), "127.0.0.1:0", [this](UniqueFd fd, std::string peer, std::string local) {
          auto tcp = std::make_unique<transport::TcpConnection>(loop_.get(), std::move(fd),
                                                                std::move(peer), std::move(local));
          tcp_connections_.push_back(tcp.get());
          target_->AddConnection(std::move(tcp));
        });
    ASSERT_TRUE(listener.ok()) << listener.status();
    listener_ = std::move(*listener);
    port_ = static_cast<uint16_t>(
        std::stoi(listener_->address().substr(listener_->address().rfind(':') + 1)));
    thread_ = std::thread([this] { loop_->Run(); });
  }
  void TearDown() override {
    loop_->Post([this] {
      listener_.reset();
      target_.reset();  // may already be gone
      loop_->Stop();
    });
    thread_.join();
  }

  // A fresh, well-behaved session can still log in and run TEST UNIT READY.
  void ExpectTargetStillServes() {
    RawInitiator ok(port_);
    ASSERT_TRUE(ok.connected());
    ASSERT_TRUE(ok.Login(kIqn, 0x23d000000099ULL));
    uint32_t itt = ok.SendCommand({0x00}, 0, false, false);  // TEST UNIT READY
    // A unit attention may come first on a new nexus; retry once.
    for (int i = 0; i < 3; ++i) {
      auto rsp = ok.Receive();
      ASSERT_TRUE(rsp.has_value());
      ASSERT_EQ(rsp->bhs.opcode(), Opcode::kScsiResponse);
      ASSERT_EQ(rsp->bhs.itt(), itt);
      if (rsp->bhs.byte(3) == 0) return;
      itt = ok.SendCommand({0x00}, 0, false, false);
    }
    FAIL() << "TEST UNIT READY never succeeded";
  }

  // Sum over every TCP connection accepted so far; only for tests whose connections are
  // all still open (the target owns and frees them).
  // Logs `a` in as the leading connection of a session with `isid` and `b` in as its
  // second connection (CID 1).
  void LoginTwoConnections(RawInitiator& a, RawInitiator& b, uint64_t isid) {
    ASSERT_TRUE(a.Login(kIqn, isid));
    ASSERT_NE(a.tsih(), 0);
    ASSERT_TRUE(b.Login(kIqn, isid, a.tsih(), /*cid=*/1));
    EXPECT_EQ(b.tsih(), a.tsih());
  }

  uint64_t SumOverTcpConnections(uint64_t (transport::TcpConnection::*counter)() const) {
    std::promise<uint64_t> total;
    loop_->Post([&] {
      uint64_t n = 0;
      for (transport::TcpConnection* c : tcp_connections_) n += (c->*counter)();
      total.set_value(n);
    });
    return total.get_future().get();
  }
  uint64_t ImmediateBuffersHandedOver() {
    return SumOverTcpConnections(&transport::TcpConnection::immediate_buffers_handed_over);
  }
  uint64_t UnplacedDataBuffersHandedOver() {
    return SumOverTcpConnections(&transport::TcpConnection::unplaced_data_buffers_handed_over);
  }

  std::unique_ptr<EventLoop> loop_;
  std::unique_ptr<Target> target_;
  std::vector<transport::TcpConnection*> tcp_connections_;  // loop thread only
  std::shared_ptr<scsi::testing::MemoryBlockStore> store_;
  std::unique_ptr<transport::TcpListener> listener_;
  std::thread thread_;
  uint16_t port_ = 0;
};

TEST_F(TargetFixture, GarbageBeforeLoginClosesOnlyThatConnection) {
  RawInitiator bad(port_);
  ASSERT_TRUE(bad.connected());
  std::vector<uint8_t> junk(200);
  for (size_t i = 0; i < junk.size(); ++i) junk[i] = static_cast<uint8_t>(i * 37 + 11);
  bad.SendRaw(junk);
  EXPECT_TRUE(bad.WaitClosed());
  ExpectTargetStillServes();
}

TEST_F(TargetFixture, OversizedDataSegmentClosesConnection) {
  RawInitiator bad(port_);
  ASSERT_TRUE(bad.Login(kIqn));
  Bhs b = Bhs::Make(Opcode::kDataOut, 0x80);
  b.set_data_segment_length(0xffffff);  // 16 MiB, far above MaxRecvDataSegmentLength
  std::vector<uint8_t> w(b.data(), b.data() + pdu::kBhsSize);
  bad.SendRaw(w);
  EXPECT_TRUE(bad.WaitClosed());
  ExpectTargetStillServes();
}

TEST_F(TargetFixture, UnknownOpcodeIsRejected) {
  RawInitiator i(port_);
  ASSERT_TRUE(i.Login(kIqn));
  Bhs b = Bhs::Make(static_cast<Opcode>(0x1c), 0x80);
  b.set_immediate(true);
  b.set_itt(0x77);
  i.Send(b);
  auto rsp = i.Receive();
  ASSERT_TRUE(rsp.has_value());
  EXPECT_EQ(rsp->bhs.opcode(), Opcode::kReject);
  EXPECT_EQ(rsp->bhs.byte(2), static_cast<uint8_t>(pdu::RejectReason::kCommandNotSupported));
  ASSERT_EQ(rsp->data.size(), pdu::kBhsSize);  // the rejected header comes back
  EXPECT_EQ(rsp->data[0] & 0x3f, 0x1c);
  // The connection stays usable.
  uint32_t itt = i.SendCommand({0x00}, 0, false, false);
  auto tur = i.Receive();
  ASSERT_TRUE(tur.has_value());
  EXPECT_EQ(tur->bhs.opcode(), Opcode::kScsiResponse);
  EXPECT_EQ(tur->bhs.itt(), itt);
}

TEST_F(TargetFixture, ImmediateDataWithoutWriteBitIsRejected) {
  RawInitiator i(port_);
  ASSERT_TRUE(i.Login(kIqn));
  i.SendCommand({0x00}, 0, false, false, std::string(512, 'x'));
  auto rsp = i.Receive();
  ASSERT_TRUE(rsp.has_value());
  EXPECT_EQ(rsp->bhs.opcode(), Opcode::kReject);
  EXPECT_EQ(rsp->bhs.byte(2), static_cast<uint8_t>(pdu::RejectReason::kProtocolError));
  ExpectTargetStillServes();
}

TEST_F(TargetFixture, CommandOutsideWindowIsIgnored) {
  RawInitiator i(port_);
  ASSERT_TRUE(i.Login(kIqn));
  Bhs b = Bhs::Make(Opcode::kScsiCommand, 0x80);
  b.set_itt(0x55);
  b.set_u32(pdu::field::kCmdSn, i.cmd_sn() + 100000);  // far beyond MaxCmdSN
  i.Send(b);
  uint32_t itt = i.SendCommand({0x00}, 0, false, false);
  auto rsp = i.Receive();
  ASSERT_TRUE(rsp.has_value());
  EXPECT_EQ(rsp->bhs.itt(), itt) << "the out-of-window command must get no answer";
}

TEST_F(TargetFixture, WriteThenReadRoundTripsThroughR2t) {
  RawInitiator i(port_);
  ASSERT_TRUE(i.Login(kIqn));
  // WRITE(10) of 8 blocks at LBA 16 with no immediate data: the target must solicit it.
  std::vector<uint8_t> cdb = {0x2a, 0, 0, 0, 0, 16, 0, 0, 8, 0};
  uint32_t itt = i.SendCommand(cdb, 4096, false, true);
  std::string payload(4096, '\0');
  for (size_t k = 0; k < payload.size(); ++k) payload[k] = static_cast<char>(k * 7 + 3);
  uint32_t sent = 0;
  while (sent < payload.size()) {
    auto pdu = i.Receive();
    ASSERT_TRUE(pdu.has_value());
    if (pdu->bhs.opcode() == Opcode::kScsiResponse) break;
    ASSERT_EQ(pdu->bhs.opcode(), Opcode::kR2t);
    uint32_t off = pdu->bhs.u32(pdu::field::kBufferOffset);
    uint32_t len = pdu->bhs.u32(pdu::field::kDesiredLength);
    Bhs d = Bhs::Make(Opcode::kDataOut, 0x80);
    d.set_itt(itt);
    d.set_ttt(pdu->bhs.ttt());
    d.set_u32(pdu::field::kBufferOffset, off);
    i.Send(d, payload.substr(off, len));
    sent += len;
  }
  auto status = i.Receive();
  ASSERT_TRUE(status.has_value());
  // The first command on a new nexus may draw a unit attention; accept GOOD only after.
  if (status->bhs.byte(3) != 0) {
    itt = i.SendCommand(cdb, 4096, false, true, payload.substr(0, 4096));
    status = i.Receive();
    ASSERT_TRUE(status.has_value());
  }
  ASSERT_EQ(status->bhs.opcode(), Opcode::kScsiResponse);
  EXPECT_EQ(status->bhs.byte(3), 0);
  std::vector<uint8_t> rcdb = {0x28, 0, 0, 0, 0, 16, 0, 0, 8, 0};
  uint32_t ritt = i.SendCommand(rcdb, 4096, true, false);
  auto data_in = i.Receive();
  ASSERT_TRUE(data_in.has_value());
  ASSERT_EQ(data_in->bhs.opcode(), Opcode::kDataIn);
  EXPECT_EQ(data_in->bhs.itt(), ritt);
  EXPECT_TRUE(data_in->bhs.flags() & pdu::kDataInFlagStatus);  // phase-collapsed status
  EXPECT_EQ(std::string(data_in->data.begin(), data_in->data.end()), payload);
}

TEST_F(TargetFixture, TwoConnectionsInOneSessionDeliverInCmdSnOrder) {
  RawInitiator a(port_), b(port_);
  ASSERT_NO_FATAL_FAILURE(LoginTwoConnections(a, b, 0x23d000000042ULL));
  // CmdSN n+1 goes out on B before n on A: the target holds it until n arrives.
  uint32_t n = a.cmd_sn();
  b.set_cmd_sn(n + 1);
  uint32_t itt_b = b.SendCommand({0x00}, 0, false, false);
  a.set_cmd_sn(n);
  uint32_t itt_a = a.SendCommand({0x00}, 0, false, false);
  auto ra = a.Receive();
  auto rb = b.Receive();
  ASSERT_TRUE(ra.has_value());
  ASSERT_TRUE(rb.has_value());
  EXPECT_EQ(ra->bhs.itt(), itt_a);
  EXPECT_EQ(rb->bhs.itt(), itt_b);
  // Both saw the window advance past both commands.
  EXPECT_EQ(rb->bhs.u32(pdu::field::kExpCmdSn), n + 2);
}

// A write held for CmdSN order (its predecessor is still on the other connection) whose
// unsolicited Data-Out arrives before the predecessor: the data waits with the command.
// (It used to be dropped as "unknown ITT" and the write never completed.)
TEST_F(TargetFixture, UnsolicitedDataOutOfAHeldCommandIsKept) {
  RawInitiator a(port_), b(port_);
  a.initial_r2t = false;
  ASSERT_NO_FATAL_FAILURE(LoginTwoConnections(a, b, 0x23d000000043ULL));
  uint32_t n = a.cmd_sn();
  // WRITE(10) of 8 blocks at LBA 40 on B with CmdSN n+1, no F bit: unsolicited data follows.
  Bhs cmd = Bhs::Make(Opcode::kScsiCommand, 0x20 | 1);
  uint32_t itt = b.next_itt();
  cmd.set_itt(itt);
  cmd.set_u32(pdu::field::kEdtl, 4096);
  cmd.set_u32(pdu::field::kCmdSn, n + 1);
  std::vector<uint8_t> cdb = {0x2a, 0, 0, 0, 0, 40, 0, 0, 8, 0};
  std::copy(cdb.begin(), cdb.end(), cmd.data() + pdu::field::kCdb);
  b.Send(cmd, "");
  std::string payload(4096, '\0');
  for (size_t k = 0; k < payload.size(); ++k) payload[k] = static_cast<char>(k * 13 + 5);
  Bhs d = Bhs::Make(Opcode::kDataOut, 0x80);
  d.set_itt(itt);
  d.set_ttt(pdu::kReservedTag);
  d.set_u32(pdu::field::kBufferOffset, 0);
  b.Send(d, payload);
  // Let the target see both before CmdSN n arrives on A.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  a.set_cmd_sn(n);
  a.SendCommand({0x00}, 0, false, false);  // TEST UNIT READY
  ASSERT_TRUE(a.Receive().has_value());
  auto status = b.Receive();
  ASSERT_TRUE(status.has_value());
  ASSERT_EQ(status->bhs.opcode(), Opcode::kScsiResponse);
  EXPECT_EQ(status->bhs.itt(), itt);
  EXPECT_EQ(status->bhs.byte(3), 0);  // TEST UNIT READY (first in order) took any UA
  EXPECT_EQ(0, std::memcmp(store_->data().data() + 40 * 512, payload.data(), payload.size()));
}

// Writes held for CmdSN order (their predecessor is still on the other connection), each
// with immediate data, two with unsolicited Data-Out: the TCP transport receives that data
// into buffers it hands to the core with the PDUs (a whole write that fits
// FirstBurstLength becomes the task buffer; a longer one has its immediate data copied
// into a task buffer of its own), rather than a heap vector per command, whose
// out-of-order frees across two connections made glibc trim and regrow its heap on every
// few commands and halved MC/S write throughput.
TEST_F(TargetFixture, ImmediateDataOfHeldWritesArrivesInHandedOverBuffers) {
  RawInitiator a(port_), b(port_);
  a.initial_r2t = false;
  ASSERT_NO_FATAL_FAILURE(LoginTwoConnections(a, b, 0x23d000000044ULL));
  constexpr uint32_t kFirstBurst = 65536;  // what RawInitiator negotiates
  auto pattern = [](size_t bytes, int seed) {
    std::string s(bytes, '\0');
    for (size_t k = 0; k < s.size(); ++k) s[k] = static_cast<char>(k * 31 + seed + (k >> 9));
    return s;
  };
  struct Write {
    uint32_t lba;
    uint32_t edtl;
    uint32_t immediate;
    uint32_t unsolicited;  // Data-Out after the command, TTT 0xffffffff
    std::string data;
    uint32_t itt = 0;
  };
  std::vector<Write> writes = {
      {100, kFirstBurst, kFirstBurst, 0, pattern(kFirstBurst, 1)},  // all immediate
      {300, kFirstBurst, 16384, kFirstBurst - 16384, pattern(kFirstBurst, 2)},
      {500, 2 * kFirstBurst, 16384, kFirstBurst - 16384, pattern(2 * kFirstBurst, 3)},  // + R2T
  };
  uint32_t n = a.cmd_sn();
  b.set_cmd_sn(n + 1);
  for (Write& w : writes) {
    bool no_unsolicited = w.unsolicited == 0;
    Bhs cmd = Bhs::Make(Opcode::kScsiCommand, (no_unsolicited ? 0x80 : 0) | 0x20 | 1);
    w.itt = b.next_itt();
    cmd.set_itt(w.itt);
    cmd.set_u32(pdu::field::kEdtl, w.edtl);
    cmd.set_u32(pdu::field::kCmdSn, b.cmd_sn());
    b.set_cmd_sn(b.cmd_sn() + 1);
    uint16_t blocks = static_cast<uint16_t>(w.edtl / 512);
    std::vector<uint8_t> cdb(10, 0);
    cdb[0] = 0x2a;  // WRITE(10)
    cdb[4] = static_cast<uint8_t>(w.lba >> 8);
    cdb[5] = static_cast<uint8_t>(w.lba);
    cdb[7] = static_cast<uint8_t>(blocks >> 8);
    cdb[8] = static_cast<uint8_t>(blocks);
    std::copy(cdb.begin(), cdb.end(), cmd.data() + pdu::field::kCdb);
    b.Send(cmd, w.data.substr(0, w.immediate));
    if (w.unsolicited > 0) {
      Bhs d = Bhs::Make(Opcode::kDataOut, 0x80);
      d.set_itt(w.itt);
      d.set_ttt(pdu::kReservedTag);
      d.set_u32(pdu::field::kBufferOffset, w.immediate);
      b.Send(d, w.data.substr(w.immediate, w.unsolicited));
    }
  }
  // Let the target receive (and hold) all of them before CmdSN n arrives on A. (Were it
  // slower, they would only be dispatched in order without waiting: the checks hold either
  // way.)
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  a.set_cmd_sn(n);
  a.SendCommand({0x00}, 0, false, false);  // TEST UNIT READY
  ASSERT_TRUE(a.Receive().has_value());
  size_t statuses = 0;
  while (statuses < writes.size()) {
    auto p = b.Receive();
    ASSERT_TRUE(p.has_value());
    if (p->bhs.opcode() == Opcode::kR2t) {
      const Write& w = writes[2];
      ASSERT_EQ(p->bhs.itt(), w.itt);
      uint32_t offset = p->bhs.u32(pdu::field::kBufferOffset);
      uint32_t length = p->bhs.u32(pdu::field::kDesiredLength);
      ASSERT_EQ(offset + length, w.edtl);
      Bhs d = Bhs::Make(Opcode::kDataOut, 0x80);
      d.set_itt(w.itt);
      d.set_ttt(p->bhs.ttt());
      d.set_u32(pdu::field::kBufferOffset, offset);
      b.Send(d, w.data.substr(offset, length));
      continue;
    }
    ASSERT_EQ(p->bhs.opcode(), Opcode::kScsiResponse);
    EXPECT_EQ(p->bhs.byte(3), 0) << "ITT " << p->bhs.itt();
    ++statuses;
  }
  for (const Write& w : writes) {
    EXPECT_EQ(
        0, std::memcmp(store_->data().data() + size_t{w.lba} * 512, w.data.data(), w.data.size()))
        << "LBA " << w.lba;
  }
  EXPECT_EQ(ImmediateBuffersHandedOver(), writes.size());
  // The unsolicited Data-Out of the two held writes had no task to go to yet: pooled
  // buffers too, kept with the held command and copied in when it runs (checked above).
  EXPECT_EQ(UnplacedDataBuffersHandedOver(), 2u);
}

TEST_F(TargetFixture, NewLeadingLoginWithSameIsidReinstatesSession) {
  RawInitiator old_session(port_);
  ASSERT_TRUE(old_session.Login(kIqn, 0x23d000000077ULL));
  RawInitiator fresh(port_);
  ASSERT_TRUE(fresh.Login(kIqn, 0x23d000000077ULL));
  EXPECT_NE(fresh.tsih(), old_session.tsih());
  EXPECT_TRUE(old_session.WaitClosed()) << "the old session's connection must be closed";
  uint32_t itt = fresh.SendCommand({0x00}, 0, false, false);
  auto rsp = fresh.Receive();
  ASSERT_TRUE(rsp.has_value());
  EXPECT_EQ(rsp->bhs.itt(), itt);
}

TEST_F(TargetFixture, JoiningAnUnknownSessionFails) {
  RawInitiator i(port_);
  EXPECT_FALSE(i.Login(kIqn, 0x23d000000011ULL, /*tsih=*/0x7777, /*cid=*/1));
  EXPECT_TRUE(i.WaitClosed());
}

TEST_F(TargetFixture, UnknownTargetNameIsRefused) {
  RawInitiator i(port_);
  EXPECT_FALSE(i.Login("iqn.2026-11.org.iser-csi:nope"));
  EXPECT_TRUE(i.WaitClosed());
  ExpectTargetStillServes();
}

// Regression: a Target destroyed in the same loop round as a connection's deferred free
// (and with a drain in progress) must not be touched by that free or by drain timers.
TEST_F(TargetFixture, TargetDestroyedRightAfterConnectionsCloseAndDrainStarts) {
  RawInitiator i(port_);
  ASSERT_TRUE(i.Login(kIqn));
  std::promise<void> done;
  loop_->Post([this, &done] {
    target_->Drain(absl::Seconds(5), [] {});
    target_->CloseAllConnections();  // frees are deferred to the end of this round
    listener_.reset();
    target_.reset();
    // Let the deferred frees and any timer that was armed run against the dead target.
    loop_->RunAfter(absl::Milliseconds(50), [&done] { done.set_value(); });
  });
  EXPECT_EQ(done.get_future().wait_for(std::chrono::seconds(5)), std::future_status::ready);
  EXPECT_TRUE(i.WaitClosed());
}

}  // namespace
}  // namespace iser::target
