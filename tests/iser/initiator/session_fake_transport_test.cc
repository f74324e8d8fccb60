// The session core against a scripted transport: the test plays the target PDU by PDU
// (login through the real TargetNegotiator), so every wire-level rule is checked
// exactly: the CmdSN window, immediate/unsolicited/solicited data, Data-In placement and
// phase-collapsed status, sense and residuals, NOP-In answers, protocol errors.
#include <future>
#include <memory>
#include <thread>

#include "gtest/gtest.h"
#include "iser/base/event_loop.h"
#include "iser/initiator/session.h"
#include "iser/login/negotiation.h"

namespace iser::initiator {
namespace {

using pdu::Bhs;
using pdu::Opcode;

struct SentPdu {
  Bhs bhs;
  std::vector<uint8_t> data;
};

class FakeTransport : public InitiatorTransport {
 public:
  // `slot` points at the test's pointer to this transport; cleared when the session
  // destroys it. `aborted` outlives it.
  FakeTransport(login::OperationalParams offer, uint32_t window, FakeTransport** slot,
                bool* aborted)
      : aborted_(aborted),
        slot_(slot),
        window_(window),
        negotiator_(MakeConfig(offer), /*leading=*/true) {}
  ~FakeTransport() override {
    if (*slot_ == this) *slot_ = nullptr;
  }

  static login::TargetLoginConfig MakeConfig(login::OperationalParams offer) {
    login::TargetLoginConfig c;
    c.offer = offer;
    c.lookup_target = [](std::string_view name) -> std::optional<login::TargetNodeInfo> {
      login::TargetNodeInfo info;
      info.name = std::string(name);
      return info;
    };
    return c;
  }

  InitiatorTransportKind kind() const override { return kind_; }
  bool solicit_beyond_immediate() const override { return solicit; }
  std::string peer_address() const override { return "fake"; }
  void SetEvents(InitiatorTransportEvents* events) override { events_ = events; }
  void ApplyParams(const login::OperationalParams& params) override { params_ = params; }
  void SendPdu(OutgoingPdu pdu) override {
    SentPdu s{pdu.bhs, std::vector<uint8_t>(pdu.data.begin(), pdu.data.end())};
    if (pdu.bhs.opcode() == Opcode::kLoginRequest) return AnswerLogin(s);
    sent.push_back(std::move(s));
  }
  void SendCommand(OutgoingPdu cmd, TaskIo&) override { SendPdu(std::move(cmd)); }
  void SendDataOut(TaskIo& io, uint32_t ttt, uint32_t offset, uint32_t length,
                   uint32_t exp_stat_sn) override {
    uint32_t sn = 0;
    uint32_t seg_max = params_.target_max_recv_dsl;
    while (length > 0) {
      uint32_t seg = std::min(length, seg_max);
      SentPdu s;
      s.bhs = Bhs::Make(Opcode::kDataOut, seg == length ? pdu::kFlagFinal : 0);
      s.bhs.set_itt(io.itt);
      s.bhs.set_ttt(ttt);
      s.bhs.set_u32(pdu::field::kDataSn, sn++);
      s.bhs.set_u32(pdu::field::kBufferOffset, offset);
      s.bhs.set_u32(pdu::field::kExpStatSn, exp_stat_sn);
      s.data.assign(io.write.begin() + offset, io.write.begin() + offset + seg);
      sent.push_back(std::move(s));
      offset += seg;
      length -= seg;
    }
  }
  void Abort(const absl::Status&) override { *aborted_ = true; }

  // Plays a target PDU (StatSN/ExpCmdSN/MaxCmdSN filled in unless `keep_sns`).
  void Deliver(Bhs bhs, std::vector<uint8_t> data = {}, bool advance_stat_sn = true) {
    bhs.set_data_segment_length(static_cast<uint32_t>(data.size()));
    bhs.set_u32(pdu::field::kStatSn, stat_sn);
    if (advance_stat_sn) ++stat_sn;
    bhs.set_exp_cmd_sn(exp_cmd_sn);
    bhs.set_max_cmd_sn(exp_cmd_sn + window_ - 1);
    pdu::ReceivedPdu p;
    p.bhs = bhs;
    std::span<uint8_t> place = events_->PlaceData(bhs);
    if (!data.empty() && place.size() == data.size()) {
      std::copy(data.begin(), data.end(), place.begin());
      p.data = place;
      p.placed = true;
    } else {
      p.owned = std::move(data);
      p.data = p.owned;
    }
    events_->OnPduReceived(std::move(p));
  }
  void set_window(uint32_t w) { window_ = w; }

  std::vector<SentPdu> sent;
  InitiatorTransportKind kind_ = InitiatorTransportKind::kTcp;
  bool solicit = false;  // solicit_beyond_immediate()
  uint32_t stat_sn = 100;
  uint32_t exp_cmd_sn = 1;

 private:
  void AnswerLogin(const SentPdu& req) {
    login::LoginRequest r;
    r.csg = (req.bhs.flags() >> 2) & 3;
    r.nsg = req.bhs.flags() & 3;
    r.transit = req.bhs.flags() & pdu::kLoginFlagTransit;
    std::string text(req.data.begin(), req.data.end());
    r.text = text;
    login::LoginResponse rsp = negotiator_.Step(r);
    Bhs b = Bhs::Make(Opcode::kLoginResponse,
                      static_cast<uint8_t>((rsp.transit ? 0x80 : 0) | rsp.csg << 2 | rsp.nsg));
    b.set_u48(pdu::field::kIsid, req.bhs.u48(pdu::field::kIsid));
    b.set_u16(pdu::field::kTsih, rsp.full_feature ? 0x1234 : 0);
    b.set_itt(req.bhs.itt());
    b.set_byte(pdu::field::kLoginStatusClass, rsp.status_class);
    b.set_byte(pdu::field::kLoginStatusDetail, rsp.status_detail);
    exp_cmd_sn = req.bhs.cmd_sn();
    std::vector<uint8_t> data(rsp.text.begin(), rsp.text.end());
    loop_events_.push_back([this, b, data] { Deliver(b, data); });
  }

 public:
  // Login responses are delivered from the loop (never inside the session's own call).
  std::vector<std::function<void()>> loop_events_;

 private:
  bool* aborted_;
  FakeTransport** slot_;
  uint32_t window_;
  login::TargetNegotiator negotiator_;
  InitiatorTransportEvents* events_ = nullptr;
  login::OperationalParams params_;
};

class SessionWire : public ::testing::Test {
 protected:
  void SetUp() override {
    auto loop = EventLoop::Create();
    ASSERT_TRUE(loop.ok());
    loop_ = std::move(*loop);
    thread_ = std::thread([this] { loop_->Run(); });
  }
  void TearDown() override {
    OnLoop([this] { session_.reset(); });
    loop_->Post([this] { loop_->Stop(); });
    thread_.join();
  }
  void OnLoop(std::function<void()> fn) {
    std::promise<void> p;
    loop_->Post([&] {
      fn();
      // Pump the fake's queued login responses until quiet.
      while (fake_ != nullptr && !fake_->loop_events_.empty()) {
        auto events = std::move(fake_->loop_events_);
        fake_->loop_events_.clear();
        for (auto& e : events) e();
      }
      p.set_value();
    });
    p.get_future().get();
  }
  // Logs in against a fake target offering `offer` with a CmdSN window of `window`.
  void LogIn(login::OperationalParams offer, uint32_t window) {
    SessionConfig c = FakeConfig();
    c.transport_factory = [this, offer, window](EventLoop*, const std::string&, absl::Duration,
                                                TransportConnectCallback done) {
      if (connects_++ > 0) {  // a reconnect: this test's target is gone
        done(absl::UnavailableError("fake target gone"));
        return;
      }
      auto t = std::make_unique<FakeTransport>(offer, window, &fake_, &aborted_);
      fake_ = t.get();
      done(std::unique_ptr<InitiatorTransport>(std::move(t)));
    };
    StartSession(c);
    fake_->sent.clear();
  }
  static SessionConfig FakeConfig() {
    SessionConfig c;
    c.portal = "fake:3260";
    c.target_name = "iqn.2026-11.org.iser-csi:fake";
    c.nop_interval = absl::ZeroDuration();
    return c;
  }
  void StartSession(const SessionConfig& c) {
    absl::Status login = absl::UnknownError("pending");
    OnLoop([&] {
      session_ = std::make_unique<Session>(loop_.get(), c);
      session_->Login([&](absl::Status s) { login = s; });
    });
    ASSERT_TRUE(login.ok()) << login;
  }
  static login::OperationalParams Offer() {
    login::OperationalParams o;
    o.initial_r2t = false;
    o.immediate_data = true;
    o.first_burst_length = 16384;
    o.max_burst_length = 65536;
    o.target_max_recv_dsl = 8192;
    o.max_outstanding_r2t = 4;
    return o;
  }
  std::vector<SentPdu> Sent(Opcode op) {
    std::vector<SentPdu> out;
    for (const SentPdu& s : fake_->sent) {
      if (s.bhs.opcode() == op) out.push_back(s);
    }
    return out;
  }
  Bhs ScsiResponse(uint32_t itt, uint8_t status) {
    Bhs b = Bhs::Make(Opcode::kScsiResponse);
    b.set_itt(itt);
    b.set_byte(3, status);
    return b;
  }

  std::unique_ptr<EventLoop> loop_;
  std::thread thread_;
  std::unique_ptr<Session> session_;
  FakeTransport* fake_ = nullptr;
  bool aborted_ = false;
  int connects_ = 0;
};

// With transport auto a reinstatement may come up over another transport than the first
// login: the session reports every login with the transport it got (the attachment
// record follows it), and transport_name() says the current one.
TEST_F(SessionWire, ReportsEachLoginWithTheTransportItGot) {
  SessionConfig c = FakeConfig();
  c.reconnect_backoff_initial = absl::Milliseconds(1);
  std::vector<InitiatorTransportKind> logins;
  c.on_logged_in = [&](InitiatorTransportKind k) { logins.push_back(k); };
  c.transport_factory = [this](EventLoop*, const std::string&, absl::Duration,
                               TransportConnectCallback done) {
    auto t = std::make_unique<FakeTransport>(Offer(), 16, &fake_, &aborted_);
    // iSER first; the reconnect finds only TCP (an auto factory falling back).
    t->kind_ = connects_++ == 0 ? InitiatorTransportKind::kIser : InitiatorTransportKind::kTcp;
    fake_ = t.get();
    done(std::unique_ptr<InitiatorTransport>(std::move(t)));
  };
  StartSession(c);
  std::string first_name;
  OnLoop([&] {
    first_name = session_->transport_name();
    session_->DropConnection(0);
  });
  EXPECT_EQ(first_name, "iser");
  // The reconnect runs from a timer; its login answers are pumped by OnLoop.
  for (int i = 0; i < 500 && logins.size() < 2; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    OnLoop([] {});
  }
  std::vector<InitiatorTransportKind> want = {InitiatorTransportKind::kIser,
                                              InitiatorTransportKind::kTcp};
  std::vector<InitiatorTransportKind> got;
  std::string now_name;
  OnLoop([&] {
    got = logins;
    now_name = session_->transport_name();
  });
  EXPECT_EQ(got, want);
  EXPECT_EQ(now_name, "tcp");
}

TEST_F(SessionWire, NeverSendsBeyondMaxCmdSnAndQueuesTheRest) {
  LogIn(Offer(), /*window=*/2);
  std::vector<int> completions(5, 0);
  OnLoop([&] {
    for (int i = 0; i < 5; ++i) {
      ScsiCommand c;  // TEST UNIT READY
      session_->Submit(c, [&, i](absl::StatusOr<ScsiResult> r) {
        EXPECT_TRUE(r.ok());
        ++completions[i];
      });
    }
  });
  auto cmds = Sent(Opcode::kScsiCommand);
  ASSERT_EQ(cmds.size(), 2u);
  uint32_t first = cmds[0].bhs.cmd_sn();
  EXPECT_EQ(first, fake_->exp_cmd_sn);
  EXPECT_EQ(cmds[1].bhs.cmd_sn(), first + 1);
  // The target takes the first command: the window slides by one.
  OnLoop([&] {
    fake_->exp_cmd_sn = first + 1;
    fake_->Deliver(ScsiResponse(cmds[0].bhs.itt(), 0));
  });
  cmds = Sent(Opcode::kScsiCommand);
  ASSERT_EQ(cmds.size(), 3u);
  EXPECT_EQ(cmds[2].bhs.cmd_sn(), first + 2);
  // ExpStatSN acknowledges the response.
  EXPECT_EQ(cmds[2].bhs.exp_stat_sn(), fake_->stat_sn);
  // A wide window lets everything go.
  OnLoop([&] {
    fake_->exp_cmd_sn = first + 3;
    fake_->set_window(100);
    for (int i = 1; i < 3; ++i) fake_->Deliver(ScsiResponse(cmds[i].bhs.itt(), 0));
  });
  cmds = Sent(Opcode::kScsiCommand);
  ASSERT_EQ(cmds.size(), 5u);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(cmds[i].bhs.cmd_sn(), first + i);
  OnLoop([&] {
    for (int i = 3; i < 5; ++i) fake_->Deliver(ScsiResponse(cmds[i].bhs.itt(), 0));
    // A duplicate response completes nothing twice.
    fake_->Deliver(ScsiResponse(cmds[4].bhs.itt(), 0));
  });
  for (int i = 0; i < 5; ++i) EXPECT_EQ(completions[i], 1) << i;
}

TEST_F(SessionWire, WriteSendsImmediateUnsolicitedAndSolicitedData) {
  LogIn(Offer(), 16);
  std::vector<uint8_t> data(100 << 10);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 7 + i / 4096);
  absl::StatusOr<ScsiResult> result = absl::UnknownError("pending");
  OnLoop([&] {
    ScsiCommand c;
    c.cdb[0] = 0x8a;
    c.write = data;
    session_->Submit(c, [&](absl::StatusOr<ScsiResult> r) { result = r; });
  });
  auto cmds = Sent(Opcode::kScsiCommand);
  ASSERT_EQ(cmds.size(), 1u);
  const Bhs& cmd = cmds[0].bhs;
  EXPECT_EQ(cmd.u32(pdu::field::kEdtl), data.size());
  EXPECT_TRUE(cmd.flags() & pdu::kCmdFlagWrite);
  EXPECT_FALSE(cmd.final_bit());          // unsolicited Data-Out follows
  ASSERT_EQ(cmds[0].data.size(), 8192u);  // immediate: min(FirstBurst, MaxRecvDSL)
  EXPECT_TRUE(std::equal(cmds[0].data.begin(), cmds[0].data.end(), data.begin()));
  auto outs = Sent(Opcode::kDataOut);
  ASSERT_EQ(outs.size(), 1u);  // [8K, 16K): the rest of the first burst
  EXPECT_EQ(outs[0].bhs.ttt(), pdu::kReservedTag);
  EXPECT_EQ(outs[0].bhs.u32(pdu::field::kBufferOffset), 8192u);
  EXPECT_TRUE(outs[0].bhs.final_bit());
  // The target solicits the remaining 84 KiB in two R2Ts (MaxBurstLength 64 KiB).
  OnLoop([&] {
    Bhs r2t = Bhs::Make(Opcode::kR2t);
    r2t.set_itt(cmd.itt());
    r2t.set_ttt(0x77);
    r2t.set_u32(pdu::field::kBufferOffset, 16384);
    r2t.set_u32(pdu::field::kDesiredLength, 65536);
    fake_->Deliver(r2t, {}, false);
    r2t.set_ttt(0x78);
    r2t.set_u32(pdu::field::kDataSn, 1);
    r2t.set_u32(pdu::field::kBufferOffset, 16384 + 65536);
    r2t.set_u32(pdu::field::kDesiredLength, data.size() - 16384 - 65536);
    fake_->Deliver(r2t, {}, false);
  });
  outs = Sent(Opcode::kDataOut);
  ASSERT_EQ(outs.size(), 1u + 8 + 3);
  std::vector<uint8_t> reassembled(data.size());
  std::copy(cmds[0].data.begin(), cmds[0].data.end(), reassembled.begin());
  uint32_t expect_sn = 0;
  uint32_t last_ttt = pdu::kReservedTag;
  for (const SentPdu& o : outs) {
    if (o.bhs.ttt() != last_ttt) expect_sn = 0;
    last_ttt = o.bhs.ttt();
    EXPECT_EQ(o.bhs.u32(pdu::field::kDataSn), expect_sn++);
    EXPECT_LE(o.data.size(), 8192u);
    std::copy(o.data.begin(), o.data.end(),
              reassembled.begin() + o.bhs.u32(pdu::field::kBufferOffset));
  }
  EXPECT_EQ(reassembled, data);
  EXPECT_TRUE(outs[8].bhs.final_bit());  // end of the first R2T's sequence
  EXPECT_FALSE(outs[7].bhs.final_bit());
  OnLoop([&] { fake_->Deliver(ScsiResponse(cmd.itt(), 0)); });
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->status, 0);
}

// A transport that wants write data solicited (iSER: RDMA Read costs the target no copy)
// sends no unsolicited Data-Out even though InitialR2T=No, and immediate data only for
// a write that fits whole: a longer one goes as the bare command, F set.
TEST_F(SessionWire, TransportThatPrefersSolicitedDataSendsNoUnsolicitedDataOut) {
  LogIn(Offer(), 16);
  fake_->solicit = true;
  std::vector<uint8_t> data(100 << 10, 0x3c);
  // Shared, not on this frame: a command still open at TearDown (after a failed ASSERT)
  // is failed into it then.
  auto result = std::make_shared<absl::StatusOr<ScsiResult>>(absl::UnknownError("pending"));
  OnLoop([&] {
    ScsiCommand c;
    c.cdb[0] = 0x8a;
    c.write = data;
    session_->Submit(c, [result](absl::StatusOr<ScsiResult> r) { *result = r; });
  });
  auto cmds = Sent(Opcode::kScsiCommand);
  ASSERT_EQ(cmds.size(), 1u);
  EXPECT_TRUE(cmds[0].bhs.final_bit());  // no unsolicited Data-Out follows
  EXPECT_EQ(cmds[0].data.size(), 0u);    // nor immediate data: the write is longer
  EXPECT_TRUE(Sent(Opcode::kDataOut).empty());
  OnLoop([&] {
    Bhs r2t = Bhs::Make(Opcode::kR2t);
    r2t.set_itt(cmds[0].bhs.itt());
    r2t.set_ttt(0x90);
    r2t.set_u32(pdu::field::kBufferOffset, 0);
    r2t.set_u32(pdu::field::kDesiredLength, 65536);
    fake_->Deliver(r2t, {}, false);
  });
  auto outs = Sent(Opcode::kDataOut);
  EXPECT_EQ(outs.size(), 8u);
  if (!outs.empty()) {
    EXPECT_EQ(outs[0].bhs.ttt(), 0x90u);
    EXPECT_EQ(outs[0].bhs.u32(pdu::field::kBufferOffset), 0u);
  }
  OnLoop([&] { fake_->Deliver(ScsiResponse(cmds[0].bhs.itt(), 0)); });
  ASSERT_TRUE(result->ok()) << result->status();

  // A write that fits the immediate data goes whole with the command.
  std::vector<uint8_t> small(8192, 0x4d);
  auto small_result = std::make_shared<absl::StatusOr<ScsiResult>>(absl::UnknownError("pending"));
  OnLoop([&] {
    ScsiCommand c;
    c.cdb[0] = 0x8a;
    c.write = small;
    session_->Submit(c, [small_result](absl::StatusOr<ScsiResult> r) { *small_result = r; });
  });
  cmds = Sent(Opcode::kScsiCommand);
  ASSERT_EQ(cmds.size(), 2u);
  EXPECT_TRUE(cmds[1].bhs.final_bit());
  EXPECT_EQ(cmds[1].data.size(), 8192u);
  OnLoop([&] { fake_->Deliver(ScsiResponse(cmds[1].bhs.itt(), 0)); });
  ASSERT_TRUE(small_result->ok()) << small_result->status();
}

TEST_F(SessionWire, ReadDataLandsInPlaceWithCollapsedStatus) {
  LogIn(Offer(), 16);
  std::vector<uint8_t> buf(12288, 0xee);
  absl::StatusOr<ScsiResult> result = absl::UnknownError("pending");
  OnLoop([&] {
    ScsiCommand c;
    c.cdb[0] = 0x88;
    c.read = buf;
    session_->Submit(c, [&](absl::StatusOr<ScsiResult> r) { result = r; });
  });
  auto cmds = Sent(Opcode::kScsiCommand);
  ASSERT_EQ(cmds.size(), 1u);
  uint32_t itt = cmds[0].bhs.itt();
  OnLoop([&] {
    Bhs d = Bhs::Make(Opcode::kDataIn, 0);
    d.set_itt(itt);
    d.set_u32(pdu::field::kBufferOffset, 8192);
    fake_->Deliver(d, std::vector<uint8_t>(4096, 0x22), false);  // out of order is fine
    d.set_u32(pdu::field::kBufferOffset, 0);
    d.set_u32(pdu::field::kDataSn, 1);
    d.set_flags(pdu::kFlagFinal | pdu::kDataInFlagStatus);
    fake_->Deliver(d, std::vector<uint8_t>(8192, 0x11));
  });
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->status, 0);
  EXPECT_TRUE(std::all_of(buf.begin(), buf.begin() + 8192, [](uint8_t b) { return b == 0x11; }));
  EXPECT_TRUE(std::all_of(buf.begin() + 8192, buf.end(), [](uint8_t b) { return b == 0x22; }));
}

TEST_F(SessionWire, SenseAndResidualsReported) {
  LogIn(Offer(), 16);
  std::vector<uint8_t> buf(4096);
  absl::StatusOr<ScsiResult> result = absl::UnknownError("pending");
  OnLoop([&] {
    ScsiCommand c;
    c.cdb[0] = 0x88;
    c.read = buf;
    session_->Submit(c, [&](absl::StatusOr<ScsiResult> r) { result = r; });
  });
  uint32_t itt = Sent(Opcode::kScsiCommand)[0].bhs.itt();
  std::vector<uint8_t> sense = {0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x21, 0x00};
  std::vector<uint8_t> seg = {0, static_cast<uint8_t>(sense.size())};
  seg.insert(seg.end(), sense.begin(), sense.end());
  OnLoop([&] {
    Bhs b = ScsiResponse(itt, 0x02);
    b.set_flags(pdu::kFlagFinal | pdu::kRspFlagUnderflow);
    b.set_u32(pdu::field::kResidual, 4096);
    fake_->Deliver(b, seg);
  });
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->status, 0x02);
  EXPECT_EQ(result->sense, sense);
  EXPECT_TRUE(result->underflow);
  EXPECT_EQ(result->residual, 4096u);
}

TEST_F(SessionWire, AnswersTargetNopInWithEcho) {
  LogIn(Offer(), 16);
  OnLoop([&] {
    Bhs nop = Bhs::Make(Opcode::kNopIn);
    nop.set_itt(pdu::kReservedTag);
    nop.set_ttt(0x55);
    nop.set_lun_field(pdu::EncodeLun(3));
    fake_->Deliver(nop, {'p', 'i', 'n', 'g'}, false);
  });
  auto outs = Sent(Opcode::kNopOut);
  ASSERT_EQ(outs.size(), 1u);
  EXPECT_EQ(outs[0].bhs.itt(), pdu::kReservedTag);
  EXPECT_EQ(outs[0].bhs.ttt(), 0x55u);
  EXPECT_TRUE(outs[0].bhs.immediate());
  EXPECT_EQ(outs[0].bhs.lun_field(), pdu::EncodeLun(3));
  EXPECT_EQ(outs[0].data, (std::vector<uint8_t>{'p', 'i', 'n', 'g'}));
}

TEST_F(SessionWire, LunResetReissuesTheCommandsItEnded) {
  LogIn(Offer(), 16);
  int completions = 0;
  OnLoop([&] {
    for (uint64_t lun : {0, 1}) {
      ScsiCommand c;
      c.lun = lun;
      session_->Submit(c, [&](absl::StatusOr<ScsiResult> r) {
        EXPECT_TRUE(r.ok());
        ++completions;
      });
    }
  });
  auto cmds = Sent(Opcode::kScsiCommand);
  ASSERT_EQ(cmds.size(), 2u);
  absl::StatusOr<pdu::TmfResponse> tmf = absl::UnknownError("pending");
  OnLoop([&] {
    session_->TaskManagement(pdu::TmfFunction::kLogicalUnitReset, 0, 0,
                             [&](absl::StatusOr<pdu::TmfResponse> r) { tmf = r; });
  });
  auto tmfs = Sent(Opcode::kTaskMgmtRequest);
  ASSERT_EQ(tmfs.size(), 1u);
  EXPECT_EQ(tmfs[0].bhs.flags() & 0x7f, static_cast<uint8_t>(pdu::TmfFunction::kLogicalUnitReset));
  OnLoop([&] {
    Bhs rsp = Bhs::Make(Opcode::kTaskMgmtResponse);
    rsp.set_itt(tmfs[0].bhs.itt());
    fake_->Deliver(rsp);
  });
  ASSERT_TRUE(tmf.ok());
  EXPECT_EQ(*tmf, pdu::TmfResponse::kComplete);
  // LUN 0's command went out again with a new CmdSN; LUN 1's was left alone.
  cmds = Sent(Opcode::kScsiCommand);
  ASSERT_EQ(cmds.size(), 3u);
  EXPECT_EQ(cmds[2].bhs.itt(), cmds[0].bhs.itt());
  EXPECT_EQ(cmds[2].bhs.cmd_sn(), cmds[1].bhs.cmd_sn() + 1);
  OnLoop([&] {
    fake_->Deliver(ScsiResponse(cmds[1].bhs.itt(), 0));
    fake_->Deliver(ScsiResponse(cmds[2].bhs.itt(), 0));
  });
  EXPECT_EQ(completions, 2);
}

TEST_F(SessionWire, R2tBeyondTheBufferDropsTheConnection) {
  LogIn(Offer(), 16);
  std::vector<uint8_t> data(4096);
  OnLoop([&] {
    ScsiCommand c;
    c.cdb[0] = 0x8a;
    c.write = data;
    session_->Submit(c, [](absl::StatusOr<ScsiResult>) {});
  });
  uint32_t itt = Sent(Opcode::kScsiCommand)[0].bhs.itt();
  OnLoop([&] {
    Bhs r2t = Bhs::Make(Opcode::kR2t);
    r2t.set_itt(itt);
    r2t.set_ttt(1);
    r2t.set_u32(pdu::field::kBufferOffset, 0);
    r2t.set_u32(pdu::field::kDesiredLength, 8192);
    fake_->Deliver(r2t, {}, false);
  });
  EXPECT_TRUE(aborted_);
  bool logged_in = true;
  OnLoop([&] { logged_in = session_->logged_in(); });
  EXPECT_FALSE(logged_in);
}

}  // namespace
}  // namespace iser::initiator
