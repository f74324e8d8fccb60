// iSER on the embedded target, end to end over software iWARP on loopback: a test
// initiator (iser_test_initiator.h) logs in over Sends, reads and writes through
// registered buffers; a plain iSCSI/TCP session shares the same port; hostile peers
// lose their connection while the target keeps serving.
#include <cstring>
#include <future>
#include <string>
#include <thread>

#include "gtest/gtest.h"
#include "iser/base/event_loop.h"
#include "iser/scsi/scsi_device.h"
#include "iser/target/target.h"
#include "iser/transport/iser/iser_portal.h"
#include "tests/iser/scsi/memory_block_store.h"
#include "tests/iser/target/raw_initiator.h"
#include "tests/iser/transport/iser/iser_test_initiator.h"

namespace iser::iser_transport {
namespace {

using pdu::Opcode;
using testing::IserMessage;
using testing::IserTestInitiator;

constexpr char kIqn[] = "iqn.2026-11.org.iser-csi:iser-e2e";

std::vector<uint8_t> Rw10(uint8_t op, uint32_t lba, uint16_t blocks) {
  return {op,
          0,
          static_cast<uint8_t>(lba >> 24),
          static_cast<uint8_t>(lba >> 16),
          static_cast<uint8_t>(lba >> 8),
          static_cast<uint8_t>(lba),
          0,
          static_cast<uint8_t>(blocks >> 8),
          static_cast<uint8_t>(blocks),
          0};
}

class IserTargetTest : public ::testing::Test {
 protected:
  // `target_recv_dsl`: the TargetRecvDataSegmentLength the target offers (0: default).
  void StartTarget(PortalTransport transport = PortalTransport::kAny, bool linux_write_base = false,
                   uint32_t target_recv_dsl = 0) {
    auto loop = EventLoop::Create();
    ASSERT_TRUE(loop.ok());
    loop_ = std::move(*loop);
    target::TargetOptions options;
    options.nop_interval = absl::ZeroDuration();
    options.offer.target_max_outstanding_unexpected_pdus = 160;
    if (target_recv_dsl != 0) options.offer.target_recv_dsl = target_recv_dsl;
    target_ = std::make_unique<target::Target>(loop_.get(), options);
    auto device = std::make_unique<scsi::Device>();
    store_ = std::make_shared<scsi::testing::MemoryBlockStore>(8 << 20);
    scsi::LogicalUnitConfig lc;
    lc.serial = "iser0";
    lc.naa_id = 0x1234567;
    lc.target_name = kIqn;
    ASSERT_TRUE(device->AddLogicalUnit(0, store_, lc).ok());
    login::TargetNodeInfo info;
    info.name = kIqn;
    ASSERT_TRUE(target_->AddNode(info, std::move(device)).ok());
    PortalOptions po;
    po.transport = transport;
    po.linux_write_base = linux_write_base;
    auto portal = Portal::Create(loop_.get(), target_.get(), "127.0.0.1:0", po);
    ASSERT_TRUE(portal.ok()) << portal.status();
    portal_ = std::move(*portal);
    thread_ = std::thread([this] { loop_->Run(); });
  }
  void TearDown() override {
    if (!loop_) return;
    initiators_.clear();
    loop_->Post([this] {
      target_.reset();
      portal_.reset();
      loop_->Stop();
    });
    thread_.join();
  }
  IserTestInitiator* NewInitiator() {
    initiators_.push_back(std::make_unique<IserTestInitiator>(loop_.get()));
    return initiators_.back().get();
  }
  size_t ConnectionCount() {
    std::promise<size_t> p;
    loop_->Post([&] { p.set_value(target_->connection_count()); });
    return p.get_future().get();
  }

  // WRITE(10) of `blocks` blocks from the initiator's buffer at `buf_off`, with
  // `immediate` bytes as immediate data; the rest solicited (RDMA Read).
  std::optional<IserMessage> Write(IserTestInitiator* ini, uint32_t lba, uint16_t blocks,
                                   size_t buf_off, size_t immediate, uint32_t* stag_out) {
    uint32_t stag = SendWrite(ini, lba, blocks, buf_off, immediate);
    if (stag_out) *stag_out = stag;
    return ini->Receive();
  }
  // Sends that WRITE(10) without waiting for its response; returns the Write STag.
  // `final_bit` false: unsolicited Data-Out would follow. `ahs` goes between BHS and data.
  static uint32_t SendWrite(IserTestInitiator* ini, uint32_t lba, uint16_t blocks, size_t buf_off,
                            size_t immediate, bool final_bit = true,
                            const std::vector<uint8_t>& ahs = {}) {
    IserHeader h;
    h.write_valid = true;
    h.write_stag = ini->NewStag();
    h.write_base = ini->base() + buf_off;
    std::string imm(reinterpret_cast<const char*>(ini->buf() + buf_off), immediate);
    ini->SendCommand(h, Rw10(0x2a, lba, blocks), blocks * 512u, false, true, imm, final_bit, ahs);
    return h.write_stag;
  }
  // Logs in and takes the power-on unit attention with TEST UNIT READY.
  void LoginReady(IserTestInitiator* ini, uint64_t isid = 0x23d000000002ULL) {
    ASSERT_TRUE(ini->Login(kIqn, isid));
    ini->SendCommand(IserHeader::Control(), {0, 0, 0, 0, 0, 0}, 0, false, false);
    auto r = ini->Receive();
    ASSERT_TRUE(r.has_value());
    ASSERT_EQ(r->bhs.opcode(), Opcode::kScsiResponse);
  }

  std::optional<IserMessage> Read(IserTestInitiator* ini, uint32_t lba, uint16_t blocks,
                                  size_t buf_off, uint32_t* stag_out) {
    IserHeader h;
    h.read_valid = true;
    h.read_stag = ini->NewStag();
    h.read_base = ini->base() + buf_off;
    if (stag_out) *stag_out = h.read_stag;
    ini->SendCommand(h, Rw10(0x28, lba, blocks), blocks * 512u, true, false);
    return ini->Receive();
  }

  std::unique_ptr<EventLoop> loop_;
  std::unique_ptr<target::Target> target_;
  std::unique_ptr<Portal> portal_;
  std::shared_ptr<scsi::testing::MemoryBlockStore> store_;
  std::thread thread_;
  std::vector<std::unique_ptr<IserTestInitiator>> initiators_;
};

std::string PrintableText(std::string t) {
  for (char& c : t)
    if (c == '\0') c = ' ';
  return t;
}

void ExpectGood(const std::optional<IserMessage>& m) {
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->bhs.opcode(), Opcode::kScsiResponse);
  EXPECT_EQ(m->bhs.byte(3), 0) << "SCSI status";
  EXPECT_EQ(m->bhs.byte(2), 0) << "response";
}

void ExpectNoDataPdus(IserTestInitiator* ini) {
  for (Opcode op : ini->opcodes_seen()) {
    EXPECT_NE(op, Opcode::kDataIn);
    EXPECT_NE(op, Opcode::kR2t);
  }
}

TEST_F(IserTargetTest, LoginOverSendsNegotiatesRdmaExtensions) {
  StartTarget();
  IserTestInitiator* ini = NewInitiator();
  ASSERT_TRUE(ini->Connect(portal_->port()));
  ASSERT_GE(ini->accept_private_data().size(), 4u);
  EXPECT_EQ(ini->accept_private_data()[0] & kIserCmZbvaNotSupported, kIserCmZbvaNotSupported);
  EXPECT_EQ(ini->accept_private_data()[0] & kIserCmSendWithInvNotSupported, 0);
  LoginReady(ini);
  const std::string text = " " + PrintableText(ini->login_text());
  EXPECT_NE(text.find(std::string(" RDMAExtensions=Yes")), std::string::npos) << text;
  // The RFC 7145 keys: answered (the initiator proposed them) and declared by the target.
  EXPECT_NE(text.find(" TargetRecvDataSegmentLength="), std::string::npos) << text;
  EXPECT_NE(text.find(" InitiatorRecvDataSegmentLength="), std::string::npos) << text;
  EXPECT_NE(text.find(" MaxOutstandingUnexpectedPDUs=160"), std::string::npos) << text;
  // Keys RFC 7145 replaces are not negotiated on an iSER connection.
  EXPECT_EQ(text.find(std::string(" MaxRecvDataSegmentLength=")), std::string::npos)
      << PrintableText(text);
  EXPECT_EQ(portal_->iser_accepted(), 1u);
}

TEST_F(IserTargetTest, WriteByRdmaReadThenReadByRdmaWrite) {
  StartTarget();
  IserTestInitiator* ini = NewInitiator();
  ASSERT_TRUE(ini->Connect(portal_->port()));
  LoginReady(ini);
  constexpr uint16_t kBlocks = 1024;  // 512 KiB: two 256 KiB bursts, both RDMA Reads
  for (size_t i = 0; i < kBlocks * 512u; ++i) ini->buf()[i] = static_cast<uint8_t>(i * 7 + 3);
  uint32_t wstag = 0;
  auto w = Write(ini, 16, kBlocks, 0, 0, &wstag);
  ExpectGood(w);
  EXPECT_TRUE(w->with_invalidate);
  EXPECT_EQ(w->invalidated_rkey, wstag);
  EXPECT_FALSE(ini->StagValid(wstag));
  // The store has the bytes.
  std::vector<uint8_t> stored(kBlocks * 512u);
  std::memcpy(stored.data(), store_->data().data() + 16 * 512, stored.size());
  EXPECT_EQ(0, std::memcmp(stored.data(), ini->buf(), stored.size()));

  uint32_t rstag = 0;
  auto r = Read(ini, 16, kBlocks, 1 << 20, &rstag);
  ExpectGood(r);
  EXPECT_TRUE(r->with_invalidate);
  EXPECT_EQ(r->invalidated_rkey, rstag);
  EXPECT_EQ(0, std::memcmp(ini->buf() + (1 << 20), ini->buf(), kBlocks * 512u));
  ExpectNoDataPdus(ini);
}

TEST_F(IserTargetTest, ImmediateUnsolicitedAndSolicitedWriteData) {
  // Offering 64 KiB segments lets FirstBurstLength be 64 KiB; the initiator still sends
  // 8 KiB Sends, as ib_iser does (it proposed TargetRecvDataSegmentLength=8192).
  StartTarget(PortalTransport::kAny, false, 64 << 10);
  IserTestInitiator* ini = NewInitiator();
  ASSERT_TRUE(ini->Connect(portal_->port()));
  LoginReady(ini);
  constexpr uint16_t kBlocks = 256;  // 128 KiB
  constexpr uint32_t kLen = kBlocks * 512u;
  for (size_t i = 0; i < kLen; ++i) ini->buf()[i] = static_cast<uint8_t>(i * 13 + 1);
  // 8 KiB immediate, then unsolicited Data-Out Sends up to FirstBurstLength (64 KiB),
  // the rest solicited by RDMA Read from the Write STag (base covers all the data:
  // TaggedBufferForSolicitedDataOnly=No).
  IserHeader h;
  h.write_valid = true;
  h.write_stag = ini->NewStag();
  h.write_base = ini->base();
  std::string imm(reinterpret_cast<const char*>(ini->buf()), 8192);
  uint32_t itt = ini->SendCommand(h, Rw10(0x2a, 100, kBlocks), kLen, false, true, imm,
                                  /*final_bit=*/false);
  for (uint32_t off = 8192, sn = 0; off < 65536; off += 8192, ++sn) {
    ini->SendDataOut(itt, sn, off,
                     std::string(reinterpret_cast<const char*>(ini->buf() + off), 8192),
                     off + 8192 == 65536);
  }
  auto rsp = ini->Receive();
  ExpectGood(rsp);
  EXPECT_EQ(0, std::memcmp(store_->data().data() + 100 * 512, ini->buf(), kLen));
  ExpectNoDataPdus(ini);
}

TEST_F(IserTargetTest, WholeWriteAsImmediateDataKeepsItsReceiveBuffer) {
  StartTarget();
  IserTestInitiator* ini = NewInitiator();
  ASSERT_TRUE(ini->Connect(portal_->port()));
  LoginReady(ini);
  // More writes than the target posts receives: every receive buffer goes to a task with
  // its 4 KiB of immediate data and is replaced by a fresh one; the data never moves.
  constexpr int kCmds = 400;
  constexpr uint32_t kLen = 4096;
  for (size_t i = 0; i < kCmds * kLen; ++i) ini->buf()[i] = static_cast<uint8_t>(i * 29 + i / 4096);
  uint64_t before = portal_->immediate_buffers_handed_over();
  for (int c = 0; c < kCmds; c += 20) {  // 20 at a time, all different blocks
    for (int k = c; k < c + 20; ++k) SendWrite(ini, k * 8, 8, k * kLen, kLen);
    for (int k = 0; k < 20; ++k) ExpectGood(ini->Receive());
  }
  EXPECT_EQ(0, std::memcmp(store_->data().data(), ini->buf(), kCmds * kLen));
  EXPECT_EQ(portal_->immediate_buffers_handed_over() - before, uint64_t{kCmds});
}

TEST_F(IserTargetTest, ImmediateDataBehindAnAhs) {
  StartTarget();
  IserTestInitiator* ini = NewInitiator();
  ASSERT_TRUE(ini->Connect(portal_->port()));
  LoginReady(ini);
  constexpr uint32_t kLen = 16384;
  for (size_t i = 0; i < kLen; ++i) ini->buf()[i] = static_cast<uint8_t>(i * 3 + 7);
  // An AHS the target ignores (type 2, as for a bidirectional command's read length) puts
  // the immediate data off the start of the receive buffer; with 8 KiB of it the data
  // runs past the data buffer into the overflow part. 4 KiB, 8 KiB immediate, each the
  // whole write or followed by RDMA Read.
  const std::vector<uint8_t> ahs = {0, 5, 2, 0, 0, 0, 0x40, 0, 0, 0, 0, 0};
  struct Case {
    uint32_t edtl, immediate;
  };
  uint32_t lba = 300;
  for (Case c : {Case{4096, 4096}, Case{8192, 8192}, Case{kLen, 4096}, Case{kLen, 8192}}) {
    SendWrite(ini, lba, static_cast<uint16_t>(c.edtl / 512), 0, c.immediate, true, ahs);
    ExpectGood(ini->Receive());
    EXPECT_EQ(0, std::memcmp(store_->data().data() + lba * 512, ini->buf(), c.edtl))
        << c.edtl << " bytes, " << c.immediate << " immediate";
    lba += 64;
  }
}

TEST_F(IserTargetTest, ConnectionDiesWhileATaskOwnsAReceiveBuffer) {
  StartTarget();
  IserTestInitiator* dying = NewInitiator();
  ASSERT_TRUE(dying->Connect(portal_->port()));
  LoginReady(dying, 0x23d000000050ULL);
  // 4 KiB immediate of an 8 KiB write, the rest promised as unsolicited Data-Out that
  // never comes: the task holds the receive buffer it adopted when the connection dies.
  for (size_t i = 0; i < 8192; ++i) dying->buf()[i] = 0xee;
  uint64_t before = portal_->immediate_buffers_handed_over();
  for (int c = 0; c < 8; ++c) SendWrite(dying, 500 + c * 16, 16, 0, 4096, /*final_bit=*/false);
  for (int i = 0; i < 200 && portal_->immediate_buffers_handed_over() - before < 8; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  dying->Kill();
  EXPECT_TRUE(dying->WaitClosed());
  // The session and its tasks are gone; the buffers went back to the allocator, and the
  // next connection's receives and writes (which may get them) see only their own bytes.
  IserTestInitiator* next = NewInitiator();
  ASSERT_TRUE(next->Connect(portal_->port()));
  LoginReady(next, 0x23d000000051ULL);
  for (size_t i = 0; i < 64 * 4096; ++i) next->buf()[i] = static_cast<uint8_t>(i * 17 + 5);
  for (int c = 0; c < 64; ++c) SendWrite(next, 1000 + c * 8, 8, c * 4096, 4096);
  for (int c = 0; c < 64; ++c) ExpectGood(next->Receive());
  EXPECT_EQ(0, std::memcmp(store_->data().data() + 1000 * 512, next->buf(), 64 * 4096));
  EXPECT_EQ(0, store_->data()[500 * 512]) << "the dead connection's partial write ran";
  for (int i = 0; i < 100 && ConnectionCount() != 1; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(ConnectionCount(), 1u);
}

TEST_F(IserTargetTest, LargerTargetRecvDataSegmentLengthIsHonoured) {
  StartTarget(PortalTransport::kAny, false, 32 << 10);
  IserTestInitiator* ini = NewInitiator();
  ASSERT_TRUE(ini->Connect(portal_->port()));
  ASSERT_TRUE(ini->Login(kIqn, 0x23d000000060ULL, 0, 0, 1, /*target_recv_dsl=*/256 << 10));
  ini->SendCommand(IserHeader::Control(), {0, 0, 0, 0, 0, 0}, 0, false, false);
  ASSERT_TRUE(ini->Receive().has_value());
  const std::string text = " " + PrintableText(ini->login_text());
  EXPECT_NE(text.find(" TargetRecvDataSegmentLength=32768"), std::string::npos) << text;
  // No more unsolicited data than one Send carries: the rest goes by RDMA Read.
  EXPECT_NE(text.find(" FirstBurstLength=32768"), std::string::npos) << text;
  constexpr uint32_t kLen = 32 << 10;
  for (size_t i = 0; i < 2 * kLen; ++i) ini->buf()[i] = static_cast<uint8_t>(i * 11 + 9);
  // A whole 32 KiB write as immediate data: one Send, adopted by the task (no copy).
  uint64_t before = portal_->immediate_buffers_handed_over();
  SendWrite(ini, 700, kLen / 512, 0, kLen);
  ExpectGood(ini->Receive());
  EXPECT_EQ(portal_->immediate_buffers_handed_over() - before, 1u);
  // 64 KiB: 32 KiB immediate, the other half by RDMA Read.
  SendWrite(ini, 800, 2 * kLen / 512, 0, kLen);
  ExpectGood(ini->Receive());
  EXPECT_EQ(0, std::memcmp(store_->data().data() + 700 * 512, ini->buf(), kLen));
  EXPECT_EQ(0, std::memcmp(store_->data().data() + 800 * 512, ini->buf(), 2 * kLen));
  // A Send beyond the declared length is a protocol error.
  SendWrite(ini, 900, 2 * kLen / 512, 0, kLen + 4096);
  EXPECT_TRUE(ini->WaitClosed());
}

TEST_F(IserTargetTest, DefaultOfferTakes16KiBSendsAndFetchesTheRest) {
  StartTarget();
  IserTestInitiator* ini = NewInitiator();
  ASSERT_TRUE(ini->Connect(portal_->port()));
  ASSERT_TRUE(ini->Login(kIqn, 0x23d000000061ULL, 0, 0, 1, /*target_recv_dsl=*/256 << 10));
  const std::string text = " " + PrintableText(ini->login_text());
  EXPECT_NE(text.find(" TargetRecvDataSegmentLength=16384"), std::string::npos) << text;
  EXPECT_NE(text.find(" FirstBurstLength=16384"), std::string::npos) << text;
}

TEST(IserPortalTest, RefusesReceiveMemoryBeyondTheBound) {
  auto loop = EventLoop::Create();
  ASSERT_TRUE(loop.ok());
  target::TargetOptions options;
  options.offer.target_recv_dsl = 1 << 20;  // x 160 receives = 160 MiB per connection
  target::Target target(loop->get(), options);
  PortalOptions po;
  auto portal = Portal::Create(loop->get(), &target, "127.0.0.1:0", po);
  EXPECT_EQ(portal.status().code(), absl::StatusCode::kInvalidArgument) << portal.status();
}

TEST_F(IserTargetTest, LinuxStyleWriteBaseStartsAtFirstSolicitedByte) {
  StartTarget(PortalTransport::kAny, /*linux_write_base=*/true);
  IserTestInitiator* ini = NewInitiator();
  ASSERT_TRUE(ini->Connect(portal_->port()));
  LoginReady(ini);
  constexpr uint32_t kLen = 64 << 10;
  for (size_t i = 0; i < kLen; ++i) ini->buf()[i] = static_cast<uint8_t>(i * 5 + 11);
  // As ib_iser: 8 KiB immediate, write_va = addr + 8 KiB (the unsolicited size).
  IserHeader h;
  h.write_valid = true;
  h.write_stag = ini->NewStag();
  h.write_base = ini->base() + 8192;
  std::string imm(reinterpret_cast<const char*>(ini->buf()), 8192);
  ini->SendCommand(h, Rw10(0x2a, 300, kLen / 512), kLen, false, true, imm);
  ExpectGood(ini->Receive());
  EXPECT_EQ(0, std::memcmp(store_->data().data() + 300 * 512, ini->buf(), kLen));
}

TEST_F(IserTargetTest, SendWithInvalidateNotUsedWhenPeerForbidsIt) {
  StartTarget();
  IserTestInitiator* ini = NewInitiator();
  ASSERT_TRUE(
      ini->Connect(portal_->port(), kIserCmZbvaNotSupported | kIserCmSendWithInvNotSupported));
  EXPECT_NE(ini->accept_private_data()[0] & kIserCmSendWithInvNotSupported, 0);
  LoginReady(ini);
  uint32_t rstag = 0;
  auto r = Read(ini, 0, 8, 0, &rstag);
  ExpectGood(r);
  EXPECT_FALSE(r->with_invalidate);
  EXPECT_TRUE(ini->StagValid(rstag));
}

TEST_F(IserTargetTest, ManyCommandsInFlight) {
  StartTarget();
  IserTestInitiator* ini = NewInitiator();
  ASSERT_TRUE(ini->Connect(portal_->port()));
  LoginReady(ini);
  constexpr int kCmds = 64;
  constexpr uint32_t kLen = 16 * 512;
  for (size_t i = 0; i < kCmds * kLen; ++i) ini->buf()[i] = static_cast<uint8_t>(i * 31 + i / 4096);
  // All writes at once (solicited: RDMA Reads, at most ORD outstanding on the QP).
  for (int c = 0; c < kCmds; ++c) {
    IserHeader h;
    h.write_valid = true;
    h.write_stag = ini->NewStag();
    h.write_base = ini->base() + c * kLen;
    ini->SendCommand(h, Rw10(0x2a, c * 16, 16), kLen, false, true);
  }
  for (int c = 0; c < kCmds; ++c) ExpectGood(ini->Receive());
  EXPECT_EQ(0, std::memcmp(store_->data().data(), ini->buf(), kCmds * kLen));
  // All reads at once, into the second half of the buffer.
  size_t half = IserTestInitiator::kBufSize / 2;
  for (int c = 0; c < kCmds; ++c) {
    IserHeader h;
    h.read_valid = true;
    h.read_stag = ini->NewStag();
    h.read_base = ini->base() + half + c * kLen;
    ini->SendCommand(h, Rw10(0x28, c * 16, 16), kLen, true, false);
  }
  for (int c = 0; c < kCmds; ++c) ExpectGood(ini->Receive());
  EXPECT_EQ(0, std::memcmp(ini->buf() + half, ini->buf(), kCmds * kLen));
  ExpectNoDataPdus(ini);
  // Buffers are registered once and reused: another round registers nothing new.
  size_t registrations = portal_->registrations();
  for (int c = 0; c < kCmds; ++c) {
    IserHeader h;
    h.read_valid = true;
    h.read_stag = ini->NewStag();
    h.read_base = ini->base() + half + c * kLen;
    ini->SendCommand(h, Rw10(0x28, c * 16, 16), kLen, true, false);
  }
  for (int c = 0; c < kCmds; ++c) ExpectGood(ini->Receive());
  EXPECT_EQ(portal_->registrations(), registrations);
}

TEST_F(IserTargetTest, TwoIserConnectionsInOneSession) {
  StartTarget();
  IserTestInitiator* a = NewInitiator();
  ASSERT_TRUE(a->Connect(portal_->port()));
  LoginReady(a, 0x23d000000030ULL);
  IserTestInitiator* b = NewInitiator();
  ASSERT_TRUE(b->Connect(portal_->port()));
  ASSERT_TRUE(b->Login(kIqn, 0x23d000000030ULL, a->tsih(), /*cid=*/1, a->cmd_sn()));
  // CmdSN is per session: b continues where a stopped.
  for (size_t i = 0; i < 4096; ++i) b->buf()[i] = static_cast<uint8_t>(i ^ 0x3c);
  ExpectGood(Write(b, 200, 8, 0, 0, nullptr));
  a->set_cmd_sn(b->cmd_sn());
  auto r = Read(a, 200, 8, 0, nullptr);
  ExpectGood(r);
  EXPECT_EQ(0, std::memcmp(a->buf(), b->buf(), 4096));
  EXPECT_EQ(ConnectionCount(), 2u);
}

TEST_F(IserTargetTest, InitiatorDiesWithReadsOutstanding) {
  StartTarget();
  auto store_writes = [&] {
    std::promise<int> p;
    loop_->Post([&] { p.set_value(store_->writes); });
    return p.get_future().get();
  };
  // 32 commands of 1 MiB (each reads the same 1 MiB of the initiator's buffer into the
  // same blocks); the initiator is killed once the first has reached the store, while
  // the others are still moving their data by RDMA Read. A test thread descheduled for
  // the whole transfer (a loaded machine) sees every write done at its first poll: that
  // attempt tested nothing and is repeated with a fresh initiator.
  constexpr int kCommands = 32;
  bool killed_mid_transfer = false;
  for (int attempt = 0; attempt < 8 && !killed_mid_transfer; ++attempt) {
    IserTestInitiator* dying = NewInitiator();
    ASSERT_TRUE(dying->Connect(portal_->port()));
    LoginReady(dying, 0x23d000000100ULL + attempt);
    int before = store_writes();
    for (int c = 0; c < kCommands; ++c) {
      IserHeader h;
      h.write_valid = true;
      h.write_stag = dying->NewStag();
      h.write_base = dying->base();
      dying->SendCommand(h, Rw10(0x2a, 0, 2048), 1 << 20, false, true);
    }
    int writes = 0;
    for (int i = 0; i < 2000 && writes == 0; ++i) {
      writes = store_writes() - before;
      if (writes == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    dying->Kill();
    EXPECT_TRUE(dying->WaitClosed());
    killed_mid_transfer = writes > 0 && writes < kCommands;
  }
  EXPECT_TRUE(killed_mid_transfer);
  IserTestInitiator* next = NewInitiator();
  ASSERT_TRUE(next->Connect(portal_->port()));
  LoginReady(next, 0x23d000000041ULL);
  ExpectGood(Read(next, 0, 8, 0, nullptr));
  for (int i = 0; i < 100 && ConnectionCount() != 1; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(ConnectionCount(), 1u);
}

TEST_F(IserTargetTest, HelloAfterLoginGetsHelloReply) {
  StartTarget();
  IserTestInitiator* ini = NewInitiator();
  ASSERT_TRUE(ini->Connect(portal_->port()));
  ASSERT_TRUE(ini->Login(kIqn));
  IserHeader hello;
  hello.opcode = IserOpcode::kHello;
  hello.max_version = kIserVersion;
  hello.min_or_cur_version = kIserVersion;
  hello.ird_or_ord = 4;
  std::vector<uint8_t> msg(kIserHeaderSize);
  EncodeIserHeader(hello, msg);
  ini->SendRaw(msg);
  auto r = ini->Receive();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->hdr.opcode, IserOpcode::kHelloReply);
  EXPECT_FALSE(r->hdr.reject);
  EXPECT_EQ(r->hdr.min_or_cur_version, kIserVersion);
  EXPECT_EQ(r->hdr.ird_or_ord, 4);  // min(target ORD 16, initiator IRD 4)
  // Then full feature phase as usual.
  ini->SendCommand(IserHeader::Control(), {0, 0, 0, 0, 0, 0}, 0, false, false);
  auto tur = ini->Receive();
  ASSERT_TRUE(tur.has_value());
  EXPECT_EQ(tur->bhs.opcode(), Opcode::kScsiResponse);
  // A second Hello is a protocol error.
  ini->SendRaw(msg);
  EXPECT_TRUE(ini->WaitClosed());
}

TEST_F(IserTargetTest, TcpAndIserSessionsShareOnePort) {
  StartTarget();
  IserTestInitiator* ini = NewInitiator();
  ASSERT_TRUE(ini->Connect(portal_->port()));
  LoginReady(ini, 0x23d000000010ULL);
  target::testing::RawInitiator tcp(portal_->port());
  ASSERT_TRUE(tcp.connected());
  ASSERT_TRUE(tcp.Login(kIqn, 0x23d000000011ULL));
  tcp.SendCommand({0, 0, 0, 0, 0, 0}, 0, false, false);
  ASSERT_TRUE(tcp.Receive().has_value());  // the unit attention
  EXPECT_EQ(portal_->tcp_accepted(), 1u);
  EXPECT_EQ(portal_->iser_accepted(), 1u);

  // iSER writes, TCP reads the same blocks back as Data-In PDUs, interleaved.
  for (size_t i = 0; i < 4096; ++i) ini->buf()[i] = static_cast<uint8_t>(0xA5 ^ i);
  ExpectGood(Write(ini, 40, 8, 0, 0, nullptr));
  uint32_t itt = tcp.SendCommand(Rw10(0x28, 40, 8), 4096, true, false);
  std::string got;
  for (;;) {
    auto p = tcp.Receive();
    ASSERT_TRUE(p.has_value());
    ASSERT_EQ(p->bhs.itt(), itt);
    if (p->bhs.opcode() == Opcode::kDataIn) got.append(p->data.begin(), p->data.end());
    if (p->bhs.opcode() == Opcode::kScsiResponse ||
        (p->bhs.opcode() == Opcode::kDataIn && (p->bhs.flags() & pdu::kDataInFlagStatus)))
      break;
  }
  ASSERT_EQ(got.size(), 4096u);
  EXPECT_EQ(0, std::memcmp(got.data(), ini->buf(), 4096));
  auto r = Read(ini, 40, 8, 8192, nullptr);
  ExpectGood(r);
  EXPECT_EQ(0, std::memcmp(ini->buf() + 8192, ini->buf(), 4096));
  EXPECT_EQ(ConnectionCount(), 2u);
}

TEST_F(IserTargetTest, PortalRestrictedToOneTransport) {
  StartTarget(PortalTransport::kIser);
  target::testing::RawInitiator tcp(portal_->port());
  ASSERT_TRUE(tcp.connected());
  EXPECT_FALSE(tcp.Login(kIqn));
  IserTestInitiator* ini = NewInitiator();
  ASSERT_TRUE(ini->Connect(portal_->port()));
  LoginReady(ini);
  EXPECT_EQ(portal_->tcp_accepted(), 0u);
}

TEST_F(IserTargetTest, TcpOnlyPortalRefusesIser) {
  StartTarget(PortalTransport::kTcp);
  IserTestInitiator* ini = NewInitiator();
  EXPECT_FALSE(ini->Connect(portal_->port()));
  target::testing::RawInitiator tcp(portal_->port());
  ASSERT_TRUE(tcp.Login(kIqn));
}

TEST_F(IserTargetTest, BogusReadStagClosesOnlyThatConnection) {
  StartTarget();
  IserTestInitiator* bad = NewInitiator();
  ASSERT_TRUE(bad->Connect(portal_->port()));
  LoginReady(bad, 0x23d000000020ULL);
  IserHeader h;
  h.read_valid = true;
  h.read_stag = 0xdead0001;  // names no region of the initiator
  h.read_base = bad->base();
  bad->SendCommand(h, Rw10(0x28, 0, 8), 4096, true, false);
  EXPECT_TRUE(bad->WaitClosed());

  IserTestInitiator* good = NewInitiator();
  ASSERT_TRUE(good->Connect(portal_->port()));
  LoginReady(good, 0x23d000000021ULL);
  ExpectGood(Read(good, 0, 8, 0, nullptr));
}

TEST_F(IserTargetTest, OutOfBoundsWriteStagClosesTheConnection) {
  StartTarget();
  IserTestInitiator* bad = NewInitiator();
  ASSERT_TRUE(bad->Connect(portal_->port()));
  LoginReady(bad);
  IserHeader h;
  h.write_valid = true;
  h.write_stag = bad->NewStag();
  h.write_base = bad->base() + IserTestInitiator::kBufSize - 512;  // runs off the end
  bad->SendCommand(h, Rw10(0x2a, 0, 8), 4096, false, true);
  EXPECT_TRUE(bad->WaitClosed());
}

TEST_F(IserTargetTest, ReadWithoutReadStagClosesTheConnection) {
  StartTarget();
  IserTestInitiator* bad = NewInitiator();
  ASSERT_TRUE(bad->Connect(portal_->port()));
  LoginReady(bad);
  bad->SendCommand(IserHeader::Control(), Rw10(0x28, 0, 8), 4096, true, false);
  EXPECT_TRUE(bad->WaitClosed());
}

TEST_F(IserTargetTest, GarbageSendClosesTheConnection) {
  StartTarget();
  IserTestInitiator* bad = NewInitiator();
  ASSERT_TRUE(bad->Connect(portal_->port()));
  bad->SendRaw(std::vector<uint8_t>(20, 0x55));  // shorter than an iSER header
  EXPECT_TRUE(bad->WaitClosed());
}

}  // namespace
}  // namespace iser::iser_transport
