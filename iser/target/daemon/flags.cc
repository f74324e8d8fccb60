#include "iser/target/daemon/flags.h"

#include <algorithm>
#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace iser::target {

const char* DaemonUsage() {
  return R"(usage: iser-target [options]
  --listen ADDR:PORT        portal to listen on (repeatable; default 0.0.0.0:3260)
  --transport tcp|iser|any  what the portals serve: iSCSI/TCP, iSER over software
                            iWARP, or both on the same port (default any)
  --mpa-crc yes|no          iSER: want CRC32C on every MPA FPDU (default yes, RFC 5044);
                            no: CRC only when the initiator asks for it (as Linux siw)
  --digests yes|no          iSCSI/TCP: use HeaderDigest and DataDigest CRC32C when the
                            initiator offers them (default no: answer None)
  --target IQN              add a target node; the options below apply to the last one
  --alias NAME              TargetAlias
  --lun FILE                add a LUN backed by a sparse file (numbered from 0 in order)
  --size SIZE               create or grow the last LUN's file to SIZE (e.g. 1G, 512M)
  --block-size 512|4096     logical block size of the last LUN (default 512)
  --read-only               the last LUN is write protected
  --chap-user U --chap-secret S                 require CHAP from initiators
  --mutual-chap-user U --mutual-chap-secret S   answer the initiator's challenge
  --allow-initiator IQN     only these initiators may log in (repeatable)
  --queue-depth N           commands in flight per session (default 128)
  --drain-timeout SECONDS   how long SIGTERM waits for in-flight commands (default 30)
  --busy-poll-us N          keep polling N us after activity before sleeping (default 200;
                            0 sleeps at once: less CPU, more latency at low queue depth)
  --log-level LEVEL         debug, info, warning or error (default info)
  --config FILE             read options from FILE, one per line, without the dashes
  --help
)";
}

absl::StatusOr<uint64_t> ParseSize(absl::string_view text) {
  std::string t = absl::AsciiStrToUpper(absl::StripAsciiWhitespace(text));
  // Accept 1G, 1GB and 1GiB alike (binary units).
  if (absl::EndsWith(t, "IB"))
    t.resize(t.size() - 2);
  else if (t.size() > 1 && t.back() == 'B' && !absl::ascii_isdigit(t[t.size() - 2]))
    t.pop_back();
  uint64_t mult = 1;
  if (!t.empty()) {
    switch (t.back()) {
      case 'K':
        mult = 1ULL << 10;
        break;
      case 'M':
        mult = 1ULL << 20;
        break;
      case 'G':
        mult = 1ULL << 30;
        break;
      case 'T':
        mult = 1ULL << 40;
        break;
      default:
        break;
    }
    if (mult != 1) t.pop_back();
  }
  double value;
  if (t.empty() || !absl::SimpleAtod(t, &value) || value < 0 || value * mult > 1e18)
    return absl::InvalidArgumentError(absl::StrCat("bad size '", text, "'"));
  return static_cast<uint64_t>(value * static_cast<double>(mult));
}

namespace {

bool LooksLikeIscsiName(absl::string_view name) {
  return (absl::StartsWith(name, "iqn.") || absl::StartsWith(name, "eui.") ||
          absl::StartsWith(name, "naa.")) &&
         name.size() <= 223 && name.find_first_of(" \t,/") == absl::string_view::npos;
}

class Parser {
 public:
  absl::Status Apply(absl::string_view name,
                     const std::function<absl::StatusOr<std::string>()>& value);
  absl::Status Finish();
  DaemonFlags flags;

 private:
  TargetFlags* CurrentTarget(absl::string_view opt, absl::Status* error) {
    if (flags.targets.empty()) {
      *error = absl::InvalidArgumentError(absl::StrCat("--", opt, " needs a --target before it"));
      return nullptr;
    }
    return &flags.targets.back();
  }
  LunFlags* CurrentLun(absl::string_view opt, absl::Status* error) {
    TargetFlags* t = CurrentTarget(opt, error);
    if (t == nullptr) return nullptr;
    if (t->luns.empty()) {
      *error = absl::InvalidArgumentError(absl::StrCat("--", opt, " needs a --lun before it"));
      return nullptr;
    }
    return &t->luns.back();
  }
  int depth_ = 0;
};

absl::Status Parser::Apply(absl::string_view name,
                           const std::function<absl::StatusOr<std::string>()>& value) {
  absl::Status error;
  static constexpr const char* kKnown[] = {"help",
                                           "read-only",
                                           "listen",
                                           "transport",
                                           "mpa-crc",
                                           "target",
                                           "alias",
                                           "lun",
                                           "size",
                                           "block-size",
                                           "chap-user",
                                           "chap-secret",
                                           "mutual-chap-user",
                                           "mutual-chap-secret",
                                           "allow-initiator",
                                           "queue-depth",
                                           "drain-timeout",
                                           "busy-poll-us",
                                           "digests",
                                           "log-level",
                                           "config"};
  if (std::find(std::begin(kKnown), std::end(kKnown), name) == std::end(kKnown))
    return absl::InvalidArgumentError(absl::StrCat("unknown option --", name));
  auto need = [&]() -> absl::StatusOr<std::string> { return value(); };
  if (name == "help") {
    flags.help = true;
    return absl::OkStatus();
  }
  if (name == "read-only") {
    LunFlags* lun = CurrentLun(name, &error);
    if (!lun) return error;
    lun->read_only = true;
    return absl::OkStatus();
  }
  auto v = need();
  if (!v.ok()) return v.status();
  const std::string& val = *v;
  if (name == "listen") {
    flags.listen.push_back(val);
  } else if (name == "transport") {
    if (val != "tcp" && val != "iser" && val != "any")
      return absl::InvalidArgumentError(
          absl::StrCat("--transport '", val, "': want tcp, iser or any"));
    flags.transport = val;
  } else if (name == "mpa-crc") {
    if (val != "yes" && val != "no")
      return absl::InvalidArgumentError(absl::StrCat("--mpa-crc '", val, "': want yes or no"));
    flags.mpa_crc = val == "yes";
  } else if (name == "target") {
    if (!LooksLikeIscsiName(val))
      return absl::InvalidArgumentError(
          absl::StrCat("--target '", val, "' is not an iSCSI name (iqn./eui./naa.)"));
    for (const auto& t : flags.targets)
      if (t.iqn == val) return absl::InvalidArgumentError(absl::StrCat("duplicate --target ", val));
    flags.targets.push_back(TargetFlags{.iqn = val});
  } else if (name == "alias") {
    TargetFlags* t = CurrentTarget(name, &error);
    if (!t) return error;
    t->alias = val;
  } else if (name == "lun") {
    TargetFlags* t = CurrentTarget(name, &error);
    if (!t) return error;
    t->luns.push_back(LunFlags{.path = val});
  } else if (name == "size") {
    LunFlags* lun = CurrentLun(name, &error);
    if (!lun) return error;
    auto size = ParseSize(val);
    if (!size.ok()) return size.status();
    lun->size_bytes = *size;
  } else if (name == "block-size") {
    LunFlags* lun = CurrentLun(name, &error);
    if (!lun) return error;
    if (val != "512" && val != "4096")
      return absl::InvalidArgumentError("--block-size must be 512 or 4096");
    lun->block_size = val == "512" ? 512 : 4096;
  } else if (name == "chap-user" || name == "chap-secret" || name == "mutual-chap-user" ||
             name == "mutual-chap-secret") {
    TargetFlags* t = CurrentTarget(name, &error);
    if (!t) return error;
    login::ChapCredentials& c = absl::StartsWith(name, "mutual") ? t->mutual_chap : t->chap;
    (absl::EndsWith(name, "user") ? c.user : c.secret) = val;
  } else if (name == "allow-initiator") {
    TargetFlags* t = CurrentTarget(name, &error);
    if (!t) return error;
    t->allowed_initiators.push_back(val);
  } else if (name == "queue-depth") {
    if (!absl::SimpleAtoi(val, &flags.queue_depth) || flags.queue_depth < 1 ||
        flags.queue_depth > 4096)
      return absl::InvalidArgumentError("--queue-depth must be 1..4096");
  } else if (name == "drain-timeout") {
    double secs;
    if (!absl::SimpleAtod(val, &secs) || secs < 0)
      return absl::InvalidArgumentError("--drain-timeout must be a number of seconds");
    flags.drain_timeout = absl::Seconds(secs);
  } else if (name == "busy-poll-us") {
    uint32_t us;
    if (!absl::SimpleAtoi(val, &us) || us > 1000000)
      return absl::InvalidArgumentError("--busy-poll-us must be 0..1000000");
    flags.busy_poll = absl::Microseconds(us);
  } else if (name == "digests") {
    if (val != "yes" && val != "no") return absl::InvalidArgumentError("--digests wants yes or no");
    flags.digests = val == "yes";
  } else if (name == "log-level") {
    if (val == "debug")
      flags.log_level = LogLevel::kDebug;
    else if (val == "info")
      flags.log_level = LogLevel::kInfo;
    else if (val == "warning")
      flags.log_level = LogLevel::kWarning;
    else if (val == "error")
      flags.log_level = LogLevel::kError;
    else
      return absl::InvalidArgumentError("--log-level must be debug, info, warning or error");
  } else if (name == "config") {
    if (++depth_ > 4) return absl::InvalidArgumentError("--config nested too deeply");
    std::ifstream in(val);
    if (!in) return absl::NotFoundError(absl::StrCat("cannot read config file ", val));
    std::string line;
    int line_no = 0;
    while (std::getline(in, line)) {
      ++line_no;
      absl::string_view l = absl::StripAsciiWhitespace(line);
      if (l.empty() || l.front() == '#') continue;
      std::pair<std::string, std::string> kv =
          absl::StrSplit(l, absl::MaxSplits(absl::ByAnyChar(" \t="), 1));
      std::string key(absl::StripPrefix(kv.first, "--"));
      std::string arg(absl::StripAsciiWhitespace(kv.second));
      absl::Status s = Apply(key, [&]() -> absl::StatusOr<std::string> {
        if (arg.empty()) return absl::InvalidArgumentError(absl::StrCat(key, " needs a value"));
        return arg;
      });
      if (!s.ok())
        return absl::InvalidArgumentError(absl::StrCat(val, ":", line_no, ": ", s.message()));
    }
    --depth_;
  } else {
    return absl::InvalidArgumentError(absl::StrCat("unknown option --", name));
  }
  return absl::OkStatus();
}

absl::Status Parser::Finish() {
  if (flags.help) return absl::OkStatus();
  if (flags.targets.empty()) return absl::InvalidArgumentError("no --target given");
  for (const auto& t : flags.targets) {
    if ((t.chap.user.empty()) != (t.chap.secret.empty()))
      return absl::InvalidArgumentError("--chap-user and --chap-secret go together");
    if ((t.mutual_chap.user.empty()) != (t.mutual_chap.secret.empty()))
      return absl::InvalidArgumentError("--mutual-chap-user and --mutual-chap-secret go together");
    if (!t.mutual_chap.user.empty() && t.chap.user.empty())
      return absl::InvalidArgumentError("mutual CHAP needs --chap-user/--chap-secret too");
    for (const auto& l : t.luns)
      if (l.size_bytes % l.block_size != 0)
        return absl::InvalidArgumentError(
            absl::StrCat("--size of ", l.path, " is not a multiple of the block size"));
  }
  if (flags.listen.empty()) flags.listen.push_back("0.0.0.0:3260");
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<DaemonFlags> ParseDaemonFlags(int argc, char** argv) {
  Parser p;
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (!absl::StartsWith(arg, "--"))
      return absl::InvalidArgumentError(absl::StrCat("unexpected argument '", arg, "'"));
    arg.remove_prefix(2);
    std::string name(arg), inline_value;
    bool has_inline = false;
    if (size_t eq = arg.find('='); eq != absl::string_view::npos) {
      name = std::string(arg.substr(0, eq));
      inline_value = std::string(arg.substr(eq + 1));
      has_inline = true;
    }
    absl::Status s = p.Apply(name, [&]() -> absl::StatusOr<std::string> {
      if (has_inline) return inline_value;
      if (i + 1 >= argc)
        return absl::InvalidArgumentError(absl::StrCat("--", name, " needs a value"));
      return std::string(argv[++i]);
    });
    if (!s.ok()) return s;
  }
  if (absl::Status s = p.Finish(); !s.ok()) return s;
  return std::move(p.flags);
}

}  // namespace iser::target
