import { PicopayError } from '../errors.ts';

/**
 * Runs one command's main: a PicopayError (a user's mistake, a refusal) becomes one line
 * on stderr with its code and exit status 2; anything else is a bug and keeps its stack.
 */
export async function runCommand(command: string, main: (argv: string[]) => Promise<void>, argv: string[]): Promise<void> {
  try {
    await main(argv);
  } catch (err) {
    if (err instanceof PicopayError) {
      process.stderr.write(`picopay ${command}: ${err.message} [${err.code}]\n`);
      process.exit(2);
    }
    throw err;
  }
}
