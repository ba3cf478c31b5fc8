# Bootstrap guardian from a clean clone on Windows PowerShell / PowerShell 7:
# venv -> editable install -> start -> wait for /readyz -> print OK -> stop. Every wait is bounded.
# Usage: pwsh scripts/bootstrap.ps1 [-Port 18090]
# Note: written for parity with bootstrap.sh but NOT yet run on Windows (see
# docs/configuration-matrix.md).
param([int]$Port = 18090)
$ErrorActionPreference = "Stop"

$Here = Split-Path -Parent $PSScriptRoot
$Work = Join-Path ([System.IO.Path]::GetTempPath()) ("guardian-bootstrap-" + [guid]::NewGuid())
New-Item -ItemType Directory -Path $Work | Out-Null
$Venv = Join-Path $Here ".venv"
$Py = if ($IsWindows -or $env:OS -eq "Windows_NT") { Join-Path $Venv "Scripts\python.exe" } else { Join-Path $Venv "bin/python" }
$Proc = $null

try {
    Write-Host "guardian bootstrap: creating venv in $Venv"
    python -m venv $Venv
    & $Py -m pip install --quiet --upgrade pip
    Write-Host "guardian bootstrap: installing (pip install -e .)"
    & $Py -m pip install --quiet -e $Here
    if ($LASTEXITCODE -ne 0) { throw "pip install failed" }

    Write-Host "guardian bootstrap: starting on port $Port"
    $Proc = Start-Process -FilePath $Py -PassThru -NoNewWindow `
        -ArgumentList @("-m", "guardian", "serve", "--port", "$Port", "--data-dir", (Join-Path $Work "data")) `
        -RedirectStandardOutput (Join-Path $Work "serve.out") -RedirectStandardError (Join-Path $Work "serve.err")

    $Ready = $false
    for ($i = 0; $i -lt 120; $i++) {
        try {
            $r = Invoke-WebRequest -UseBasicParsing -TimeoutSec 2 -Uri "http://127.0.0.1:$Port/readyz"
            if ($r.StatusCode -eq 200) { $Ready = $true; break }
        } catch { }
        if ($Proc.HasExited) { break }
        Start-Sleep -Milliseconds 500
    }
    if (-not $Ready) {
        Get-Content (Join-Path $Work "serve.err") -Tail 20 | Write-Error
        throw "guardian bootstrap: FAILED, not ready after 60 s"
    }
    & $Py -m guardian status --url "http://127.0.0.1:$Port"
    Write-Host "OK"
}
finally {
    if ($Proc -and -not $Proc.HasExited) {
        # Windows has no SIGTERM; Stop-Process ends the keeper and its children notice
        # the parent is gone within a second (parent-polling thread) and exit.
        Stop-Process -Id $Proc.Id
        $Proc.WaitForExit(30000) | Out-Null
    }
    Remove-Item -Recurse -Force $Work -ErrorAction SilentlyContinue
}
