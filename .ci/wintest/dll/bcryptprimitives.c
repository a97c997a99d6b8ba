/*
 * ProcessPrng for Wine releases that lack bcryptprimitives.dll (Wine 8, as
 * Debian 12 ships it). The Go runtime (1.24 and later) refuses to start on
 * Windows without this export. It is built only for the Wine test run in
 * .ci/wintest and is never part of the library.
 */
#include <windows.h>
#include <ntsecapi.h>

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
	while (len > 0) {
		/* RtlGenRandom takes a 32-bit length. */
		ULONG n = len > 0x40000000 ? 0x40000000 : (ULONG)len;
		if (!RtlGenRandom(data, n))
			return FALSE;
		data += n;
		len -= n;
	}
	return TRUE;
}
