// SPDX-License-Identifier: MIT
#include "agent/privilege.hpp"

#include <grp.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace agent {

bool drop_privileges(std::string_view user, std::string *err)
{
	std::string name(user);
	std::vector<char> buf(16384);
	passwd pw{}, *res = nullptr;
	int rc = getpwnam_r(name.c_str(), &pw, buf.data(), buf.size(), &res);
	if (!res && !name.empty() && name.find_first_not_of("0123456789") == std::string::npos)
		rc = getpwuid_r(static_cast<uid_t>(strtoul(name.c_str(), nullptr, 10)), &pw, buf.data(),
				buf.size(), &res);
	bool numeric = !name.empty() && name.find_first_not_of("0123456789") == std::string::npos;
	if (!res && !numeric) {
		*err = "drop privileges: no user " + name + (rc ? std::string(": ") + strerror(rc) : "");
		return false;
	}
	// A numeric id with no passwd entry (a minimal container or guest):
	// that uid, the same gid, no supplementary groups.
	uid_t uid = res ? pw.pw_uid : static_cast<uid_t>(strtoul(name.c_str(), nullptr, 10));
	gid_t gid = res ? pw.pw_gid : static_cast<gid_t>(uid);
	if (getuid() == uid && geteuid() == uid)
		return true;
	auto fail = [&](const char *what) {
		*err = std::string("drop privileges to ") + name + ": " + what + ": " + strerror(errno);
		return false;
	};
	if (res ? (initgroups(pw.pw_name, gid) < 0 && setgroups(1, &gid) < 0)
		: setgroups(0, nullptr) < 0)
		return fail("setgroups");
	if (setresgid(gid, gid, gid) < 0)
		return fail("setresgid");
	if (setresuid(uid, uid, uid) < 0)
		return fail("setresuid");
	if (uid != 0 && (setuid(0) == 0 || seteuid(0) == 0)) {
		errno = EPERM;
		return fail("root could be regained");
	}
	// Setting ids cleared the dumpable flag; core dumps stay off.
	return true;
}

std::uint64_t raise_fd_limit()
{
	rlimit rl{};
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return 0;
	if (rl.rlim_cur < rl.rlim_max) {
		rlimit want = rl;
		want.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &want) == 0)
			rl = want;
	}
	return rl.rlim_cur;
}

} // namespace agent
